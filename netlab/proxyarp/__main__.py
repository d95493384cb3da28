"""`python -m netlab.proxyarp --iface IF --socket PATH ...`: run the proxy-ARP daemon."""

import sys

from netlab.proxyarp.daemon import main

sys.exit(main())
