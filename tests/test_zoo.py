"""Built-in architectures and user model files."""

import pytest
import snntorch as snn
import torch

import snntorch_async as sa
from snntorch_async import simulate
from snntorch_async.reference import run_snntorch
from snntorch_async.app.zoo import ZOO, ModelFileError, build_zoo_model, load_model_file
from snntorch_async.errors import ConfigError


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_run_like_snntorch_and_use_lava_compatible_reset(name):
    torch.manual_seed(0)
    small = {"hidden": 6} if "conv" not in name else {"channels": 2}
    model = build_zoo_model(name, **small)
    neurons = [m for m in model.modules() if isinstance(m, (snn.Leaky, snn.RLeaky))]
    assert neurons
    for m in neurons:
        assert m.reset_mechanism == "zero" and not m.reset_delay
    x = (torch.rand(3, 2, *ZOO[name].input_shape) < 0.3).float()
    assert torch.equal(simulate(model, x).spikes, run_snntorch(model, x))


def test_shd_rmlp_is_recurrent_and_runs_under_the_async_schedulers():
    torch.manual_seed(0)
    model = build_zoo_model("shd_rmlp", hidden=8)
    assert isinstance(model[2], snn.RLeaky) and model[2].recurrent.weight.shape == (8, 8)
    x = (torch.rand(4, 2, 1, 700) < 0.05).float()
    ref = simulate(model, x)
    assert torch.equal(ref.spikes, run_snntorch(model, x))
    assert torch.equal(simulate(model, x, scheduler=sa.RandomAsync()).spikes, ref.spikes)
    one = build_zoo_model("shd_rmlp", hidden=8, all_to_all=False)
    assert not one[2].all_to_all and float(one[2].V) == 1.0


def test_unknown_zoo_name_lists_choices():
    with pytest.raises(ValueError, match="Unknown model 'mlp'; expected one of .*digits_mlp"):
        build_zoo_model("mlp")


def test_model_file_with_model_or_build_model(tmp_path):
    f = tmp_path / "net.py"
    f.write_text(
        "import snntorch as snn\nfrom torch import nn\ninput_shape = (4,)\n"
        "def build_model():\n"
        "    return nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.5, init_hidden=True))\n"
    )
    model, shape = load_model_file(f)
    assert shape == (4,) and isinstance(model[0], torch.nn.Linear)


def test_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "missing.py")
    f = tmp_path / "empty.py"
    f.write_text("x = 1\n")
    with pytest.raises(ModelFileError, match="defines neither `model` nor `build_model`"):
        load_model_file(f)
    f.write_text("model = 3\n")
    with pytest.raises(ModelFileError, match="defines int; expected a module-level `model`"):
        load_model_file(f)
    f.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelFileError, match="raised RuntimeError: boom"):
        load_model_file(f)


@pytest.mark.parametrize("name", ["digits_mlp2", "nmnist_mlp", "shd_mlp"])
def test_zoo_mlps_take_the_reference_regimes_bias_and_init(name):
    torch.manual_seed(0)
    linears = lambda m: [x for x in m.modules() if isinstance(x, torch.nn.Linear)]  # noqa: E731
    for lin in linears(build_zoo_model(name, hidden=32, bias=False, init="xavier")):
        fan_out, fan_in = lin.weight.shape
        xavier, default = (6 / (fan_in + fan_out)) ** 0.5, fan_in**-0.5
        assert lin.bias is None
        assert default < lin.weight.abs().max() <= xavier  # xavier-uniform, not torch's default
    assert all(lin.bias is not None for lin in linears(build_zoo_model(name, hidden=32)))
    with pytest.raises(ConfigError, match="init='he' is not known"):
        build_zoo_model(name, init="he")
