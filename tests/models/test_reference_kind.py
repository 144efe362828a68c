"""The reference-model kind: one resolution of 'auto', read by the trainer and the estimate."""

import pytest

from apo.models.config import REFERENCE_KINDS, resolve_reference_kind


@pytest.mark.parametrize(("lora", "kind"), [(True, "adapter_disabled"), (False, "copy")])
def test_auto_is_the_adapter_disabled_base_with_lora_else_a_copy(lora, kind):
    assert resolve_reference_kind("auto", lora) == kind


@pytest.mark.parametrize("kind", ["copy", "adapter_disabled", "none"])
@pytest.mark.parametrize("lora", [True, False])
def test_an_explicit_kind_is_itself(kind, lora):
    assert resolve_reference_kind(kind, lora) == kind


def test_an_unknown_kind_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown reference kind 'twin'; allowed: auto, copy"):
        resolve_reference_kind("twin", False)


def test_the_config_offers_exactly_the_kinds_resolved():
    from apo.config import ReferenceConfig

    annotation = ReferenceConfig.model_fields["kind"].annotation
    assert set(annotation.__args__) == set(REFERENCE_KINDS)
