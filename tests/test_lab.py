"""Stopping JupyterLab leaves nothing behind: its process group and kernels in sessions of their own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from course_utils.tools.lab import (
    FIRST_LESSON,
    UPLOAD_LIMIT_BYTES,
    LabServer,
    course_lab_env,
    course_lab_options,
    lab_command,
    start_lab,
    stop_lab,
    student_lab_command,
)
from course_utils.tools.processes import alive, descendants, group_alive

# A stand-in server that ignores SIGTERM and starts a "kernel" in a session of its own, as Jupyter does.
STUBBORN_SERVER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kernel = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"],
                          start_new_session=True)
print(kernel.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX only")
def test_stop_lab_kills_group_and_kernels_that_ignore_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    kernel = 0
    try:
        kernel = int(process.stdout.readline())
        assert kernel in descendants(process.pid)
        server = LabServer(process, "http://127.0.0.1:9/", "token", tmp_path, tmp_path / "log")
        started = time.monotonic()
        stopped = stop_lab(server, grace=1.0)
        assert {process.pid, kernel} <= stopped
        assert time.monotonic() - started < 10
        assert not group_alive(process.pid) and not alive(kernel)
    finally:  # never leave the stand-ins running, whatever happened above
        for pid in (process.pid, kernel):
            if pid and alive(pid):
                os.kill(pid, 9)
        process.wait(timeout=5)
        process.stdout.close()


def test_lab_command_is_make_labs_jupyter_lab_on_loopback_with_token(tmp_path):
    command = lab_command(Path(tmp_path), 8899, "abc")
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]  # this environment's JupyterLab
    root = getattr(os, "geteuid", lambda: -1)() == 0  # no geteuid on Windows: never root there
    assert command[3:] == [
        f"--notebook-dir={tmp_path}",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",  # loopback only: nobody else on the lecture hall's network reaches it
        "--ServerApp.port=8899",
        "--ServerApp.port_retries=0",  # that port or fail, never a surprise URL
        "--IdentityProvider.token=abc",
    ] + (["--allow-root"] if root else [])


def test_course_lab_opens_lesson_00_of_the_course_folder_with_the_course_settings(tmp_path):
    lesson = tmp_path / FIRST_LESSON
    lesson.parent.mkdir(parents=True)
    lesson.write_text("{}")
    command = student_lab_command(tmp_path, ["--port", "8890"])
    assert command[:4] == [sys.executable, "-m", "jupyterlab", f"--notebook-dir={tmp_path}"]
    assert command[-1] == str(lesson)  # jupyter lab's path argument: the lesson opens at once
    assert command[-3:-1] == ["--port", "8890"] and command[4:-3] == course_lab_options()
    settings = next(a.split("=", 1)[1] for a in command if a.startswith("--LabApp.app_settings_dir="))
    overrides = json.loads((Path(settings) / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"  # no news pop-up


def test_the_course_server_config_is_added_to_the_users_not_put_in_its_place():
    env = course_lab_env({"JUPYTER_CONFIG_PATH": "/etc/elsewhere"})
    first, rest = env["JUPYTER_CONFIG_PATH"].split(os.pathsep, 1)
    assert rest == "/etc/elsewhere"
    config = json.loads((Path(first) / "jupyter_server_config.json").read_text())
    limit = config["ServerApp"]["tornado_settings"]["websocket_max_message_size"]
    assert limit == UPLOAD_LIMIT_BYTES >= 2 * 120 * 2**20  # a phone's largest upload, twice over
    assert "JUPYTER_CONFIG_DIR" not in env or env["JUPYTER_CONFIG_DIR"] == os.environ.get("JUPYTER_CONFIG_DIR")


async def execute_over_websocket(server, code: str) -> dict:
    """Start a kernel, send one execute_request over its websocket, return the execute_reply's content."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    query = f"token={server.token}"
    reply = await AsyncHTTPClient().fetch(f"{server.url}api/kernels?{query}", method="POST", body="{}")
    kernel = json.loads(reply.body)["id"]
    url = f"{server.url.replace('http', 'ws', 1)}api/kernels/{kernel}/channels?{query}"
    socket = await websocket_connect(url, max_message_size=UPLOAD_LIMIT_BYTES)
    header = {"msg_id": "big", "username": "t", "session": "s", "msg_type": "execute_request", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
    await socket.write_message(json.dumps(message))
    while True:
        text = await asyncio.wait_for(socket.read_message(), timeout=120)
        assert text is not None, "the server closed the websocket (message over its size limit?)"
        answer = json.loads(text)
        if answer["msg_type"] == "execute_reply" and answer["parent_header"].get("msg_id") == "big":
            socket.close()
            return answer["content"]


@pytest.mark.slow  # starts JupyterLab
def test_jupyterlab_with_the_course_settings_has_no_news_and_takes_a_30_mb_message(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    server = start_lab(root, tmp_path / "home", course_settings=True)
    try:
        url = f"{server.url}lab/api/settings/@jupyterlab/apputils-extension:notification?token={server.token}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            setting = json.load(reply)
        size = 30 * 2**20  # a phone photo; Tornado's default limit is 10 MB
        result = asyncio.run(execute_over_websocket(server, f"x = '{'a' * size}'\nassert len(x) == {size}"))
    finally:
        stop_lab(server)
    assert setting["schema"]["properties"]["fetchNews"]["default"] == "false"  # the default the page acts on
    assert result["status"] == "ok", result
