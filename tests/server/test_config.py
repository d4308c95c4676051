"""`monge serve` flags are made from ServerConfig's fields: each default stated once."""

import dataclasses

from monge.client.cli import build_parser, server_config
from monge.server.config import MIB, ServerConfig


def test_every_setting_but_the_token_list_is_a_serve_flag():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    dests = {action.dest for action in serve._actions}
    missing = [f.name for f in dataclasses.fields(ServerConfig) if f.name not in dests]
    assert missing == ["tokens"]


def test_no_flags_give_the_configs_defaults(monkeypatch):
    monkeypatch.delenv("MONGE_TOKENS", raising=False)
    assert server_config(build_parser().parse_args(["serve"])) == ServerConfig()


def test_flags_in_other_units_convert_and_keep_their_names():
    args = build_parser().parse_args(["serve", "--max-message-mb", "3", "--max-request-memory-mb", "5",
                                      "--batch-delay-ms", "7.5", "--grace", "2", "--max-batch", "4",
                                      "--insecure", "--data-dir", "/tmp/monge-flags", "--max-attempts", "3"])
    config = server_config(args)
    assert config.max_message_bytes == 3 * MIB and config.max_request_memory_bytes == 5 * MIB
    assert abs(config.max_batch_delay_seconds - 0.0075) < 1e-15
    assert (config.grace_seconds, config.max_batch_size, config.insecure, config.data_dir, config.max_attempts) == (
        2.0, 4, True, "/tmp/monge-flags", 3)


def test_help_shows_the_default_in_the_flags_units():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    text = serve.format_help()
    assert "--max-message-mb" in text and "(default: 512)" in text
    assert "--batch-delay-ms" in text and "(default: 2)" in text


def test_the_service_page_lists_every_serve_flag():
    import pathlib

    page = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    flags = [s for action in serve._actions for s in action.option_strings if s.startswith("--") and s != "--help"]
    assert [flag for flag in flags if f"`{flag}`" not in page] == []
