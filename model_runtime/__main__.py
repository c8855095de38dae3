from model_runtime.cli import main

raise SystemExit(main())
