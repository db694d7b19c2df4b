"""Many runs: a study's grid (grid), the holdout protocol (protocol), Optuna search (search), planning and the
dry run (planning), one run's skip/resume decision (runner), launchers (launch), the quickstart."""
