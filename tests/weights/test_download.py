"""Release-weight download against a local HTTP server on 127.0.0.1 serving files the test made."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

import efficientformer
from efficientformer.weights import download, zoo
from efficientformer.weights.checkpoint import write_state_dict
from efficientformer.weights.download import DownloadError, fetch_weights, resolve_weights
from support import randomize_state_dict


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()
    html: set[str] = set()
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        self.hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path in self.html else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A truncated transfer announces the full length, sends half and closes the connection.
        self.wfile.write(body[: len(body) // 2] if self.path in self.truncate else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"files": {}, "truncate": set(), "html": set(), "hits": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFICIENTFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFICIENTFORMER_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def tiny_weights_file(tmp_path):
    """An official-layout checkpoint of the tiny test model, and its tensors."""
    model = efficientformer.create_model("efficientformerv2_test")
    state = randomize_state_dict(model.state_dict(), seed=3)
    path = tmp_path / "tiny_official.pth"
    write_state_dict(state, path, "official")
    return path, state


def _entry(url: str, sha256: str | None, name: str = "tiny.pth") -> zoo.Weights:
    return zoo.Weights(tag="efficientformerv2_test.local", model="efficientformerv2_test", url=url, file_name=name,
                       layout="official", num_params=0, sha256=sha256)


def test_download_verifies_hash_and_caches(server, cache, tiny_weights_file, monkeypatch):
    path, state = tiny_weights_file
    body = path.read_bytes()
    server.RequestHandlerClass.files["/tiny.pth"] = body
    entry = _entry(server.url + "/tiny.pth", hashlib.sha256(body).hexdigest())
    monkeypatch.setitem(zoo.WEIGHTS, entry.tag, entry)

    model = efficientformer.create_model("efficientformerv2_test", pretrained=entry.tag)
    cached = cache / "weights" / "tiny.pth"
    assert cached.read_bytes() == body
    assert torch.equal(model.stem.conv1.conv.weight, state["stem.conv1.conv.weight"])
    assert [p for p in cached.parent.iterdir() if p.name.endswith(".tmp")] == []

    # Second use: served from the cache, even with the server gone and offline mode on.
    server.shutdown()
    monkeypatch.setenv("EFFICIENTFORMER_OFFLINE", "1")
    assert resolve_weights(entry.tag) == cached
    assert server.RequestHandlerClass.hits == ["/tiny.pth"]


def test_bad_hash_leaves_nothing(server, cache, tiny_weights_file):
    body = tiny_weights_file[0].read_bytes()
    server.RequestHandlerClass.files["/tiny.pth"] = body
    entry = _entry(server.url + "/tiny.pth", "0" * 64)
    with pytest.raises(DownloadError, match="sha256 .* expected 0000") as info:
        fetch_weights(entry)
    assert str(cache / "weights" / "tiny.pth") in str(info.value)  # says where to put it by hand
    assert list((cache / "weights").iterdir()) == []


def test_truncated_transfer_is_an_error(server, cache, tiny_weights_file):
    server.RequestHandlerClass.files["/tiny.pth"] = tiny_weights_file[0].read_bytes()
    server.RequestHandlerClass.truncate.add("/tiny.pth")
    with pytest.raises(DownloadError, match="stopped after"):
        fetch_weights(_entry(server.url + "/tiny.pth", None))
    assert list((cache / "weights").iterdir()) == []


def test_web_page_instead_of_file_is_an_error(server, cache):
    server.RequestHandlerClass.files["/tiny.pth"] = b"<html>Sign in to continue</html>"
    server.RequestHandlerClass.html.add("/tiny.pth")
    with pytest.raises(DownloadError, match="web page"):
        fetch_weights(_entry(server.url + "/tiny.pth", None))
    assert not (cache / "weights" / "tiny.pth").exists()


def test_http_error_and_server_down(server, cache):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_weights(_entry(server.url + "/missing.pth", None))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=r"could not download .*Without network access, download .* put it at"):
        fetch_weights(_entry(f"http://127.0.0.1:{port}/tiny.pth", None))


def test_offline_without_cache_says_where_to_put_the_file(cache, monkeypatch):
    monkeypatch.setenv("EFFICIENTFORMER_OFFLINE", "1")
    entry = zoo.default_weights("efficientformerv2_s0")
    with pytest.raises(DownloadError) as info:
        resolve_weights(entry.tag)
    message = str(info.value)
    assert entry.url in message and str(cache / "weights" / entry.file_name) in message


def test_unpublished_hash_is_trusted_on_first_use(server, cache, tiny_weights_file):
    body = tiny_weights_file[0].read_bytes()
    server.RequestHandlerClass.files["/tiny.pth"] = body
    entry = _entry(server.url + "/tiny.pth", None)
    path = fetch_weights(entry)
    recorded = Path(str(path) + ".sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(body).hexdigest()
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))  # the cached file rots
    with pytest.raises(DownloadError, match="modified or corrupted"):
        fetch_weights(entry)


def test_local_path_and_unknown_tag(tmp_path, tiny_weights_file):
    path, _ = tiny_weights_file
    assert resolve_weights(path) == path
    with pytest.raises(FileNotFoundError, match="neither an existing file nor a known weight tag"):
        resolve_weights("efficientformerv2_s0.no_such_tag")


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv("EFFICIENTFORMER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert download.cache_dir() == tmp_path / "efficientformer"
    monkeypatch.setenv("EFFICIENTFORMER_CACHE", str(tmp_path / "mine"))
    assert download.cache_dir() == tmp_path / "mine"
