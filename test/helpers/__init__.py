"""What the tests share: server processes, test policies and envs, stand-in models, step checks.

Imported as ``helpers.<module>`` (``test/`` is on ``sys.path`` under pytest, and on the
``PYTHONPATH`` of the servers the tests start, so ``helpers.serving_test_policies:CountingPolicy``
names a policy to ``start-server``). Imports nothing itself: the torch-free venv loads
``helpers.standin_models`` through it.
"""
