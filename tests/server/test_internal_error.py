"""An unexpected failure answers INTERNAL with an id that is in the log, and no traceback."""

import logging

import grpc
from google.rpc import error_details_pb2, status_pb2

from monge.server.errors import InvalidArgument, to_status


def test_unknown_exception_becomes_internal_with_logged_id(caplog):
    try:
        raise ZeroDivisionError("secret detail")
    except ZeroDivisionError as error:
        with caplog.at_level(logging.ERROR, logger="monge.server"):
            status = to_status(error, "Sinkhorn")
    assert status.code == grpc.StatusCode.INTERNAL
    assert "secret" not in status.details and "Traceback" not in status.details
    error_id = status.details.split("id ")[1].split(")")[0]
    assert len(error_id) == 12
    assert error_id in caplog.text and "ZeroDivisionError" in caplog.text


def test_invalid_argument_carries_every_field():
    status = to_status(InvalidArgument(("x", "bad"), ("epsilon", "worse")), "Sinkhorn")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    details = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert details.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("x", "bad"), ("epsilon", "worse")
    ]
