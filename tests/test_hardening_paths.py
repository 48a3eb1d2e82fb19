"""Names typed into nodes never leave their folder (issue 15): model names and repo ids stay in the models
folder, snapshot paths in the output/input folders (with one error for missing and refused files),
and a config's ae_uri is an owner/name. An absolute folder the user types stays an explicit choice."""
from __future__ import annotations

import os

import pytest

from worldengine.errors import WaypointError
from worldengine.synthetic import write_tiny_checkpoint

SMALL = {"height": 2, "width": 4, "tokens_per_frame": 8}


@pytest.fixture()
def layout(tmp_path, monkeypatch):
    """<tmp>/models/waypoint/inside_model, <tmp>/models/outside_model (a sibling), cwd = models/waypoint."""
    models = tmp_path / "models" / "waypoint"
    write_tiny_checkpoint(models / "inside_model", model_type="waypoint-1.5", **SMALL)
    write_tiny_checkpoint(tmp_path / "models" / "outside_model", model_type="waypoint-1.5", **SMALL)
    monkeypatch.setenv("WAYPOINT_MODELS_DIR", str(models))
    monkeypatch.chdir(models)
    return tmp_path, models


def test_local_model_names_stay_in_the_models_folder(layout):
    from nodes import host
    tmp_path, models = layout
    assert host.resolve_local_model("inside_model") == str(models / "inside_model")
    for name in ("../outside_model", "inside_model/../../outside_model", str(tmp_path / "models" / "outside_model"),
                 "~/outside_model", "..", ".", ""):
        assert host.resolve_local_model(name) is None


def test_relative_escapes_are_refused_whether_or_not_they_exist(layout):
    from worldengine.hub import resolve_model_folder
    tmp_path, models = layout
    messages = []
    for name in ("../outside_model", "../no_such_model", "x/../../outside_model"):
        with pytest.raises(WaypointError, match="may not leave its folder") as err:
            resolve_model_folder(name, models)
        messages.append(str(err.value).split(":", 1)[1])
    assert len(set(messages)) == 1    # the same words: nothing about what exists
    assert resolve_model_folder(str(tmp_path / "models" / "outside_model")).name == "outside_model"   # typed
    assert resolve_model_folder("inside_model").name == "inside_model"


def test_load_node_refuses_an_escaping_repo_id(layout):
    from nodes.core import WaypointLoad
    with pytest.raises(WaypointError, match="may not leave its folder"):
        WaypointLoad().load("inside_model", "cpu", "float32", "none", False, repo_id="../outside_model")


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "output"
    (output / "waypoint").mkdir(parents=True)
    (output / "waypoint" / "world_00001.safetensors").write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    (tmp_path / "output" / "notes.txt").write_bytes(b"x")
    return tmp_path, output


def test_snapshot_paths_never_leave_the_output_folder(folders):
    from nodes.world_nodes import find_snapshot
    tmp_path, output = folders
    assert find_snapshot("waypoint/world_00001.safetensors") == output / "waypoint" / "world_00001.safetensors"
    words = set()
    for text in ("../secret.safetensors", "../missing.safetensors", "waypoint/../../secret.safetensors",
                 "missing.safetensors", "notes.txt", "waypoint"):
        with pytest.raises(WaypointError) as err:
            find_snapshot(text)
        words.add(str(err.value).replace(repr(text), "<text>"))
    assert len(words) == 1 and "not found" in words.pop()
    assert find_snapshot(str(tmp_path / "secret.safetensors")) == tmp_path / "secret.safetensors"   # typed


def test_symlink_out_of_the_output_folder_is_refused(folders):
    from nodes.world_nodes import find_snapshot
    tmp_path, output = folders
    os.symlink(tmp_path / "secret.safetensors", output / "link.safetensors")
    with pytest.raises(WaypointError, match="not found"):
        find_snapshot("link.safetensors")


@pytest.mark.parametrize("uri", ["x/..", "../x", "x/../..", "/etc", "a", "a/b/c", ".."])
def test_ae_uri_must_be_owner_and_name(tmp_path, uri):
    from types import SimpleNamespace

    from worldengine.ae import find_autoencoder_files
    with pytest.raises(WaypointError, match="ae_uri"):
        find_autoencoder_files(tmp_path, SimpleNamespace(ae_uri=uri, uses_taehv=True))


def test_ae_uri_sibling_folder_is_still_searched(tmp_path):
    from types import SimpleNamespace

    from worldengine.ae import find_autoencoder_files
    (tmp_path / "taehv1_5").mkdir()
    (tmp_path / "taehv1_5" / "taehv1_5.safetensors").write_bytes(b"")
    (tmp_path / "model").mkdir()
    found = find_autoencoder_files(tmp_path / "model", SimpleNamespace(ae_uri="Overworld-Models/taehv1_5",
                                                                      uses_taehv=True))
    assert found.path == tmp_path / "taehv1_5" / "taehv1_5.safetensors"
