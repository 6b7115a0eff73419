"""The application asks once per handler whether it is a coroutine function, and runs it as Flask would."""
from wallet_market.app import WalletMarketFlask


class _View:
    def get(self):
        return "sync"

    async def post(self):
        return "async"


def test_plain_handlers_are_returned_as_they_are_and_coroutines_still_go_through_async_to_sync():
    app = WalletMarketFlask("handler-kinds")
    wrapped = []
    app.async_to_sync = lambda func: wrapped.append(func) or "wrapped"  # type: ignore[method-assign]

    def hook():
        return None

    async def async_hook():
        return None

    for _ in range(2):  # the second time the answer comes from what the first one found
        assert app.ensure_sync(hook) is hook
        view = _View()  # a new bound method per request, as MethodView makes them
        assert app.ensure_sync(view.get) == view.get
        assert app.ensure_sync(async_hook) == "wrapped"
        assert app.ensure_sync(view.post) == "wrapped"
    assert wrapped.count(async_hook) == 2 and len(wrapped) == 4
