"""vitnp.io.download: a cached file is used without the network; no network is one clear OSError (no test here
touches the network)."""
import urllib.error
import urllib.request

import pytest

from vitnp.io import download


def test_a_cached_checkpoint_is_returned_without_the_network(tmp_path, monkeypatch):
    (tmp_path / "ViT-B_16.npz").write_bytes(b"cached")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("the network was used"))
    assert download.fetch_original("ViT-B_16", tmp_path).read_bytes() == b"cached"


def test_offline_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(OSError, match=r"cannot download https://storage\.googleapis\.com/.*Name or service") as e:
        download.fetch_original("ViT-B_16", tmp_path)
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown checkpoint"):
        download.fetch_original("ViT-Z_99", tmp_path)
