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


def test_the_client_methods_take_every_setting_defaulting_to_the_servers():
    from monge.client import Client

    for method, table in ((Client.sinkhorn, requests.SINKHORN_OPTIONS),
                          (Client.sinkhorn_divergence, requests.SINKHORN_DIVERGENCE_OPTIONS),
                          (Client.exact_transport, requests.EXACT_OPTIONS),
                          (Client.sparsity_constrained, requests.SPARSITY_CONSTRAINED_OPTIONS)):
        parameters = inspect.signature(method).parameters
        for option in table:
            assert parameters[option.name].default is None, (method.__name__, option.name)


TABLES = {"sinkhorn": requests.SINKHORN_OPTIONS, "exact": requests.EXACT_OPTIONS,
          "sparsity": requests.SPARSITY_CONSTRAINED_OPTIONS}


@pytest.mark.parametrize("command,table", [(["solve", name], table) for name, table in TABLES.items()]
                         + [(["batch", "p.npz", "--solver", name], table) for name, table in TABLES.items()])
def test_every_setting_is_a_flag_of_the_shell(command, table):
    argv = []
    for option in table:
        argv.append(option.flag_name)
        if option.kind is not bool:
            argv.append(sorted(option.choices)[0] if option.choices else "1")
    args = build_parser().parse_args(command + argv)
    assert all(getattr(args, option.name) is not None for option in table)
    unset = build_parser().parse_args(command)
    assert all(getattr(unset, option.name) is None for option in table)


def test_the_other_builders_leave_unset_settings_to_the_server():
    exact = requests.exact_transport(*_points())
    assert not exact.HasField("p") and not exact.HasField("max_iterations") and exact.method == 0
    sparse = requests.sparsity_constrained(*_points(), k=3)
    assert sparse.k == 3 and not sparse.HasField("gamma") and not sparse.HasField("threshold")
    divergence = requests.sinkhorn_divergence(*_points(), epsilon=0.2)
    assert divergence.epsilon == 0.2 and not divergence.HasField("threshold")
    with pytest.raises(TypeError, match="unexpected keyword argument 'return_plan'"):
        requests.sinkhorn_divergence(*_points(), return_plan=True)
