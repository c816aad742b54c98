"""`python -m data_pipeline_client …`: the `data-pipeline` command."""
import sys

from data_pipeline_client.cli import main

sys.exit(main())
