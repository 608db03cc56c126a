from pathlib import Path

import pytest

from genchain.config import load_recipe, parse_overrides
from genchain.errors import ConfigError
from genchain.train.lm import GPTRecipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_flat_and_dotted_overrides_reach_their_sections():
    recipe = load_recipe(GPTRecipe, overrides=["n_layer=3", "train.max_iters=7", "learning_rate=1e-3", "bias=false"])
    assert recipe.model.n_layer == 3
    assert recipe.train.max_iters == 7
    assert recipe.train.learning_rate == pytest.approx(1e-3)
    assert recipe.model.bias is False


def test_numbers_in_exponent_form_become_ints_where_ints_are_expected():
    assert load_recipe(GPTRecipe, overrides=["max_iters=5e3"]).train.max_iters == 5000


@pytest.mark.parametrize("override, message", [
    ("n_layers=4", "unknown config key 'n_layers'"),
    ("n_layer=four", "model.n_layer must be an integer"),
    ("dropout=yes", "model.dropout must be a number"),
    ("bias=maybe", "model.bias must be true or false"),
    ("model.nope=1", "unknown config key model.nope"),
    ("nosection.x=1", "unknown config section"),
    ("n_embd=100", "divisible by n_head"),
    ("activation=relu", "activation must be one of"),
    ("novalue", "not of the form key=value"),
])
def test_bad_overrides_are_rejected_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(GPTRecipe, overrides=[override])


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("n_layer: 2\ntrain:\n  max_iters: 9\n  batch_size: 4\n")
    recipe = load_recipe(GPTRecipe, path, overrides=["batch_size=8"])
    assert (recipe.model.n_layer, recipe.train.max_iters, recipe.train.batch_size) == (2, 9, 8)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(GPTRecipe, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(GPTRecipe, bad)


def test_parse_overrides_reads_yaml_scalars():
    assert parse_overrides(["a=1", "b=0.5", "c=true", "d=text"]) == {"a": 1, "b": 0.5, "c": True, "d": "text"}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    from genchain.train.gan import GANRecipe
    from genchain.train.vae import VAERecipe

    recipe_class = {"gan": GANRecipe, "vae": VAERecipe}.get(path.name.split("_")[0], GPTRecipe)
    recipe = load_recipe(recipe_class, path)
    assert recipe.train.batch_size > 0
