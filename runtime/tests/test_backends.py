"""The backends' facts follow the configured backends, and a changed setting."""

from django.conf import settings as configured

from runtime.backends import backends


def test_the_facts_match_the_configured_backends():
    facts = backends()
    embedded = not configured.REDIS_URL
    assert facts.own_sockets_only is embedded  # the in-memory layer, or Redis
    assert facts.local_cache is embedded
    assert facts.serialised_writes is configured.DATABASES["default"]["ENGINE"].endswith("sqlite3")


def test_a_changed_setting_is_worked_out_again(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "facts"}}
    assert backends().local_cache
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert not backends().local_cache
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert backends().own_sockets_only
