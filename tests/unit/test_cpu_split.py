"""`bench.cpu_split` gives each py-spy sample to the part of the product that was running."""

from __future__ import annotations

from bench.cpu_split import split

SERVE = 'process 10:"python -m cml_monitor.cli serve --port 8080"'
CHILD = 'process 11:"python -m cml_monitor.collector_process"'
SRC = "/app/src/cml_monitor"
LIB = "/venv/lib/python3.11/site-packages"


def frame(function: str, path: str) -> str:
    return f"{function} ({path}:1)"


def test_the_innermost_frame_of_ours_decides_and_the_plumbing_is_transparent() -> None:
    raw = "\n".join(
        [
            # botocore under the AWS client: AWS
            ";".join(
                [
                    SERVE,
                    CHILD,
                    "thread (1): MainThread",
                    frame("main", f"{SRC}/collector_process.py"),
                    frame("collect", f"{SRC}/monitoring/collector.py"),
                    frame("describe", f"{SRC}/aws/ec2.py"),
                    frame("parse", f"{LIB}/botocore/parsers.py"),
                ]
            )
            + " 3",
            # a controller read on its own I/O loop, under no frame of ours: CML reads by its thread
            ";".join([SERVE, CHILD, "thread (2): cml-controllers", frame("select", "/py/selectors.py")])
            + " 1",
            # an SSE write passes through the security middleware: the stream decides
            ";".join(
                [
                    SERVE,
                    "thread (3): MainThread",
                    frame("_cmd_serve", f"{SRC}/cli.py"),
                    frame("_stream_response", f"{LIB}/sse_starlette/sse.py"),
                    frame("with_headers", f"{SRC}/api/security.py"),
                    frame("write", "/py/selector_events.py"),
                ]
            )
            + " 2",
            # the domain's shapes built for a request: the route decides
            ";".join(
                [
                    SERVE,
                    "thread (3): MainThread",
                    frame("list_workers", f"{SRC}/api/routes/workers.py"),
                    frame("to_iso", f"{SRC}/domain/times.py"),
                ]
            )
            + " 2",
        ]
    )
    shares = split(raw)
    assert shares["collector"] == {"samples": 4, "AWS calls and parsing": 75.0, "CML reads": 25.0}
    assert shares["api"] == {"samples": 4, "SSE fan-out": 50.0, "API requests": 50.0}
