from training.miniature.reproduce_tlpo.runner import main

raise SystemExit(main())
