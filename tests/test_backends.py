"""The backend registry: every registered name resolves, unknown names list the known ones, untrainable ones say so."""
from __future__ import annotations

import pytest

from reliability.backends import BACKEND_NOTES, BACKENDS, Backend, backend_class, get_backend, trainable_backends
from reliability.errors import BackendError, UnknownNameError


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_registered_backend_resolves(name):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name


def test_the_app_says_what_answers_on_every_backend():
    from reliability.ui.render import backend_note

    assert set(BACKEND_NOTES) == set(BACKENDS) and all(backend_note(name) for name in BACKENDS)
    # the default is not an audio model: its note must say so before anyone reads its answers as one
    assert "Not an audio LLM" in backend_note("cascade") and "MODEL_CARD" in backend_note("cascade")


def test_unknown_backend_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        get_backend("qwen3-audio")
    assert "qwen3-audio" in str(err.value)
    assert all(name in str(err.value) for name in BACKENDS)


def test_a_backend_that_cannot_train_says_so():
    assert trainable_backends() == ["cascade", "qwen2-audio"]
    backend = get_backend("scripted")
    for call in (backend.training_model, backend.adapter_host, backend.training_tokenizer, backend.lora_targets):
        with pytest.raises(BackendError, match=r"'scripted' cannot be trained"):
            call()
