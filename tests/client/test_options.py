"""A Sinkhorn setting is one row of requests.SINKHORN_OPTIONS: the builder, its
signature, and the shell's flags are read from it; unset settings stay off the wire."""

import inspect

import numpy as np
import pytest

from monge.client import requests
from monge.client.cli import build_parser
from monge.v1 import sinkhorn_pb2


def _points():
    return np.zeros((3, 2)), np.ones((4, 2))


def test_unset_settings_are_left_to_the_server():
    request = requests.sinkhorn(*_points())
    for field in ("epsilon", "threshold", "max_iterations"):
        assert not request.HasField(field), field
    assert request.method == sinkhorn_pb2.SINKHORN_METHOD_UNSPECIFIED
    assert request.cost == sinkhorn_pb2.COST_FUNCTION_UNSPECIFIED


def test_given_settings_reach_the_request():
    request = requests.sinkhorn(*_points(), epsilon=0.5, max_iterations=7, method="log", overrelaxation="off",
                                plan_top_k=2, return_plan=True, cost="euclidean")
    assert (request.epsilon, request.max_iterations, request.plan_top_k, request.return_plan) == (0.5, 7, 2, True)
    assert request.method == sinkhorn_pb2.SINKHORN_METHOD_LOG
    assert request.overrelaxation == sinkhorn_pb2.OVERRELAXATION_OFF
    assert request.cost == sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN


def test_a_misspelt_or_bad_setting_is_refused_as_python_would():
    with pytest.raises(TypeError, match="unexpected keyword argument 'epsilion'"):
        requests.sinkhorn(*_points(), epsilion=0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        requests.sinkhorn(*_points(), method="fast")
    with pytest.raises(TypeError, match="max_iterations must be an integer"):
        requests.sinkhorn(*_points(), max_iterations=2.5)


def test_the_signature_lists_every_setting():
    parameters = inspect.signature(requests.sinkhorn).parameters
    for option in requests.SINKHORN_OPTIONS:
        assert parameters[option.name].default is None and parameters[option.name].kind == inspect.Parameter.KEYWORD_ONLY


def test_the_client_method_takes_every_setting_defaulting_to_the_servers():
    from monge.client import Client

    parameters = inspect.signature(Client.sinkhorn).parameters
    for option in requests.SINKHORN_OPTIONS:
        assert parameters[option.name].default is None, option.name


@pytest.mark.parametrize("command", [["solve", "sinkhorn"], ["batch", "p.npz"]])
def test_every_setting_is_a_flag_of_the_shell(command):
    values = {"cost": "euclidean", "method": "log", "overrelaxation": "off"}
    argv = []
    for option in requests.SINKHORN_OPTIONS:
        argv.append(option.flag_name)
        if option.kind is not bool:
            argv.append(values.get(option.name, "1"))
    args = build_parser().parse_args(command + argv)
    assert all(getattr(args, option.name) is not None for option in requests.SINKHORN_OPTIONS)
    unset = build_parser().parse_args(command)
    assert all(getattr(unset, option.name) is None for option in requests.SINKHORN_OPTIONS)
