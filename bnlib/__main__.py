import os
import sys

from .cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # output piped into a reader that stopped early (`| head`): not an error
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise
    sys.exit(0)
