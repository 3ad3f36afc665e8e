import pytest
@pytest.fixture(autouse=True)
def _no_leaked_deadline(request):
    yield
    from matcalc_cli import budget
    if budget._state.active:
        active = list(budget._state.active)
        budget._state.active.clear()
        pytest.fail(f"leaked deadlines after {request.node.nodeid}: {[(d.seconds, d.message) for d in active]}")
