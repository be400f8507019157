"""Run one Markdown file's examples in document order: ``python _session.py PLAN.json``.

A fresh process per file, in a copy of the docs world (tests/docs/_world.py) as KEEL_HOME and
working directory. Python blocks share one namespace. ``keel ...`` runs through the function
of the installed ``keel`` console script in this process (the imports are paid once per file:
a ``keel`` process costs ~4 s of CPU here, too much for ~80 lines), ``curl`` and ``keel server``
as real processes. The first failure prints ``DOCS-FAIL <file>:<line>: <why>`` and exits 1.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

# Run as a script: its siblings are importable by their file names.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _checks import run_check  # noqa: E402
from _world import placeholders, prelude  # noqa: E402

_ADDRESS = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost|0\.0\.0\.0|keel):8080")
_TOKEN = re.compile(r"\bkeel_[A-Za-z0-9_\-]{16,}")
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


class StepFailed(Exception):
    """A doc line or block that did not do what the doc says."""


class _Tee(io.TextIOBase):
    """Writes to the real stream and keeps a copy (the tokens a command prints)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return int(self.stream.write(text))

    def flush(self) -> None:
        self.stream.flush()


class Session:
    """State shared by the steps of one file: namespace, server, last printed token."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.server: subprocess.Popen[bytes] | None = None
        self.server_argv: tuple[list[str], dict[str, str]] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.url = ""
        self.token = ""
        self.keel = entry_points(group="console_scripts")["keel"].load()
        self.logs = Path(plan["logs"])

    # -- servers ---------------------------------------------------------------------------
    def start_server(self, argv: list[str], env: dict[str, str]) -> None:
        """``keel server ARGS`` as a real process; ``--port`` replaced by a free port."""
        if self.server is not None and self.server_argv == (argv, env):
            return  # the server this file started for an earlier block
        self.stop_server()
        self.server_argv = (argv, env)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = list(argv)
        if "--port" in args:
            args[args.index("--port") + 1] = str(port)
        else:
            args += ["--port", str(port)]
        log = (self.logs / f"server-{port}.log").open("wb")
        command = [str(Path(sys.executable).with_name("keel")), *args]
        self.server = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{port}"
        self._wait_ready(log.name)
        # Commands that ask "the local server" find it at KEEL_HOST:KEEL_PORT (8080 in the docs).
        os.environ.update(KEEL_HOST="127.0.0.1", KEEL_PORT=str(port))

    def _wait_ready(self, log_name: str) -> None:
        import httpx

        deadline = time.monotonic() + 90  # importing the app takes seconds on a busy machine
        while time.monotonic() < deadline and self.server and self.server.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise StepFailed(f"keel server did not answer /healthz:\n{Path(log_name).read_text()}")

    def start_worker(self, argv: list[str], env: dict[str, str]) -> None:
        """``keel worker ARGS`` as a real background process, stopped with the file."""
        log = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        command = [str(Path(sys.executable).with_name("keel")), *argv]
        worker = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.workers.append(worker)
        time.sleep(3)  # a worker that cannot start exits at once (bad option, bad setting)
        if worker.poll() is not None:
            output = Path(log.name).read_text()
            raise StepFailed(f"keel worker exited {worker.returncode}:\n{output}")

    def close(self) -> None:
        """Stop the workers and the server this file started."""
        for worker in self.workers:
            worker.kill()
            worker.wait(timeout=20)
        self.workers.clear()
        self.stop_server()

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait(timeout=20)
            self.server = None

    def rewrite(self, text: str) -> str:
        """8080 addresses point at this file's server; ``keel_...`` is the last printed token."""
        if _ADDRESS.search(text):
            if not self.url:
                raise StepFailed("needs a server but none was started for this file")
            text = _ADDRESS.sub(self.url, text)
        if "keel_..." in text and self.token:
            text = text.replace("keel_...", self.token)
        return re.sub(r"\bJOB_ID\b", placeholders()["JOB_ID"], text)

    # -- steps -----------------------------------------------------------------------------
    def python(self, step: dict[str, Any]) -> None:
        source = "\n" * step["line"] + self.rewrite(step["text"])
        code = compile(source, step["path"], "exec")
        try:
            exec(code, self.namespace)
        except Exception:
            raise StepFailed(traceback.format_exc(limit=-6)) from None

    def shell(self, step: dict[str, Any]) -> None:
        code = 0
        for pipeline in _commands(self.rewrite(step["text"])):
            code = self.pipeline(pipeline)
            if code != 0:
                break
        if code not in step["exit_codes"]:
            said = "1 with an error: line" if code == 3 else str(code)
            raise StepFailed(f"`{step['text']}` exited {said}, the doc allows {step['exit_codes']}")

    def pipeline(self, commands: list[list[str]]) -> int:
        """``keel … | jq …``: the keel command's output piped into ``jq`` (the only filter);
        ``keel … > FILE`` writes its output to FILE."""
        if len(commands) == 1 and ">" in commands[0]:
            words = commands[0]
            if words.index(">") != len(words) - 2:
                raise StepFailed("a redirect must end the line: `keel … > FILE`")
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):
                code = self.command(words[:-2])
            Path(words[-1]).write_text(captured.getvalue())
            return code
        if len(commands) == 1:
            return self.command(commands[0])
        if commands[0][:1] != ["keel"] or any(c[:1] != ["jq"] for c in commands[1:]):
            raise StepFailed("only `keel … | jq …` pipes are supported")
        if shutil.which("jq") is None:
            raise StepFailed("the doc pipes into jq, which is not installed (apt-get install jq)")
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            code = self.command(commands[0])
        text = captured.getvalue()
        for filter_words in commands[1:]:
            done = subprocess.run(
                [*filter_words, "-e"], input=text, capture_output=True, text=True, check=False
            )
            text, code = done.stdout, code or done.returncode
        print(text, flush=True)
        return code

    def command(self, words: list[str]) -> int:
        env: dict[str, str] = {}
        while words and _ASSIGNMENT.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if not words:
            raise StepFailed("an assignment alone: use export")
        if words[0] == "export":
            for item in words[1:]:
                name, _, value = item.partition("=")
                os.environ[name] = value
            return 0
        if words[0] == "keel" and words[1:2] == ["server"]:
            self.start_server(words[1:], env)
            return 0
        if words[0] == "keel" and words[1:2] == ["worker"]:
            self.start_worker(words[1:], env)
            return 0
        if words[0] == "keel":
            return self.run_keel(words[1:], env)
        if words[0] == "curl":
            done = subprocess.run([*words, "--fail-with-body", "-sS"], env={**os.environ, **env})
            print(flush=True)
            return done.returncode
        raise StepFailed(f"cannot run `{words[0]}` here: mark the block illustrative (why)")

    def run_keel(self, argv: list[str], env: dict[str, str]) -> int:
        saved = dict(os.environ)
        os.environ.update(env)
        sys.argv = ["keel", *argv]
        tee, errors = _Tee(sys.stdout), _Tee(sys.stderr)
        code: int = 0
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(errors):
                self.keel()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        tokens = _TOKEN.findall(tee.copy.getvalue())
        if tokens:
            self.token = tokens[-1]
        if code == 1 and "error: " in errors.copy.getvalue():
            return 3  # an error, not the verdict a doc line may allow ("exit 1 if drift")
        return code


def _commands(line: str) -> list[list[list[str]]]:
    """``a && b | c`` as pipelines of word lists; ``$(…)`` words expanded by bash."""
    # ">" only as a word of its own (``keel … > FILE``): ``<run>`` in a path is a placeholder.
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.wordchars += "$(){}"
    pipelines: list[list[list[str]]] = [[[]]]
    for word in lexer:
        if word == "&&":
            pipelines.append([[]])
        elif word == "|":
            pipelines[-1].append([])
        elif word in {";", "||", "&", ">>", "2>"}:
            raise StepFailed(f"unsupported shell syntax {word!r}: keep doc lines to `a && b`")
        else:
            pipelines[-1][-1].append(_expand(word) if "$" in word else word)
    return pipelines


def _expand(word: str) -> str:
    done = subprocess.run(
        ["bash", "-c", f'printf %s "{word}"'], capture_output=True, text=True, check=True
    )
    return done.stdout


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    os.chdir(plan["workdir"])
    session = Session(plan)
    prelude(session.namespace)
    try:
        for step in plan["steps"]:
            started = time.perf_counter()
            print(f"--- {step['path']}:{step['line']} [{step['kind']}]", flush=True)
            try:
                if step["kind"] == "server":
                    session.shell({**step, "exit_codes": [0]})
                elif step["kind"] == "python":
                    session.python(step)
                elif step["kind"] == "shell":
                    session.shell(step)
                elif step.get("append_to"):  # the file with this block added is checked
                    target = Path(step["append_to"])
                    text = target.read_text() + step["text"] + "\n"
                    run_check(step["check"], text, Path(plan["home"]))
                    target.write_text(text)
                else:
                    run_check(step["check"], step["text"], Path(plan["home"]))
                    for name in (step.get("save_as") or "").split(","):
                        if name:
                            Path(name).write_text(step["text"] + "\n")
            except StepFailed as failure:
                print(f"DOCS-FAIL {step['path']}:{step['line']}: {failure}", flush=True)
                return 1
            except Exception:
                where = f"{step['path']}:{step['line']}"
                print(f"DOCS-FAIL {where}: {traceback.format_exc(limit=-6)}", flush=True)
                return 1
            print(f"--- ok in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        session.close()
    return 0


def zygote() -> int:
    """``_session.py --zygote``: import the heavy modules once, then fork one child per plan
    path read from stdin (a fresh process per file without paying ~4 s of imports each)."""
    import lightgbm  # noqa: F401
    import pandas  # noqa: F401
    import sklearn  # noqa: F401

    import keel.cli.main  # noqa: F401
    import keel.client  # noqa: F401
    import keel.services  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    for line in sys.stdin:
        if line.strip() and os.fork() == 0:
            _child(line.strip())
    return 0


def _child(plan_path: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess needs its children's codes
    plan = json.loads(Path(plan_path).read_text())
    output = os.open(plan["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.environ.clear()
    os.environ.update(plan["env"])
    sys.path.insert(0, plan["workdir"])  # what PYTHONPATH gives a fresh process
    Path(plan["pid"]).write_text(str(os.getpid()))
    code = 1
    try:
        code = main(plan_path)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        Path(plan["rc"]).write_text(str(code))
        os._exit(code)


if __name__ == "__main__":
    sys.exit(zygote() if sys.argv[1] == "--zygote" else main(sys.argv[1]))
