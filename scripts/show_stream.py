"""Show one stream per dialect through a running proxy: `python scripts/show_stream.py [--raw] [URL]`.

The code is `proxy.demo.show` (linted, type-checked and tested with the rest).
"""

from proxy.demo.show import main

main()
