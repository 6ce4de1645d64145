from speechlm.lattice import ConfusionNetwork, plot_confusion_network
from speechlm.testing.lattice import lattice_from_text


def test_plot_writes_a_png(tmp_path):
    lat = lattice_from_text("0 1 ten -1\n0 1 then -1.5\n1 2 of\n1 2 <eps> -2\n2\n", utt="p")
    out = plot_confusion_network(ConfusionNetwork.from_lattice(lat), tmp_path / "d" / "cn.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
