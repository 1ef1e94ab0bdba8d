"""Helpers shared by test modules: projects on disk, signed-in clients, servers, browsers, fakes.

A test module imports what it shares from here (``from tests.helpers.console import sign_in``), never from
another test module (tests/test_test_hygiene.py enforces it). Fixtures shared by several modules live here too,
in a module that tests/conftest.py names in ``pytest_plugins`` (so a test asks for ``console`` or ``browser`` by
parameter, with no import); fixtures that go with one topic only are imported from their module by name.
"""
