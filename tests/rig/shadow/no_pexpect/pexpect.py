raise ImportError("pexpect is hidden by the test (tests/rig/shadow)")
