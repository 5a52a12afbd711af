"""The collector pause of bulk work (kmeweb.gcpause) always gives the collector back."""

import gc

import pytest

from kmeweb import gcpause


def test_a_pause_turns_the_collector_off_and_back_on() -> None:
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_turn_it_back_on_only_when_the_last_one_ends() -> None:
    with gcpause.paused():
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_a_pause_still_turns_it_back_on() -> None:
    with pytest.raises(RuntimeError), gcpause.paused():
        raise RuntimeError("the import failed half way")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
