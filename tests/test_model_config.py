"""ModelConfig.label: what a run of an overridden named config is called in every printed line and report."""

from saformer.config import ModelConfig, get_config


def test_a_named_config_is_its_name():
    assert get_config("saformer-4-384").label == "saformer-4-384"


def test_overrides_are_listed_in_field_order():
    cfg = get_config("saformer-4-384").replace(dim=64, depth=2)
    assert cfg.label == "saformer-4-384 (depth=2, dim=64)"
    assert get_config("saformer-2-64").replace(dwc=False, n_agg=1).label == "saformer-2-64 (n_agg=1, dwc=False)"


def test_the_class_count_is_the_data_sets_not_an_override():
    assert get_config("saformer-4-384").replace(num_classes=100).label == "saformer-4-384"


def test_a_config_of_no_known_name_is_its_name():
    cfg = ModelConfig.from_dict({**get_config("saformer-2-64").to_dict(), "name": "mine", "depth": 3})
    assert cfg.label == "mine"
