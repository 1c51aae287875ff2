"""What the tests share: server processes, test policies and envs, stand-in models, step checks,
the policy environments (``policy_venvs``) and the scripts run in them (tiny checkpoints, reference rollouts).

Imported as ``helpers.<module>`` (``test/`` is on ``sys.path`` under pytest, and on the
``PYTHONPATH`` of the servers the tests start, so ``helpers.serving_test_policies:CountingPolicy``
names a policy to ``start-server``). Imports nothing itself: the torch-free venv loads
``helpers.standin_models`` through it.
"""
