"""`python -m proxy.demo`: serve the demo provider."""

from proxy.demo.app import main

main()
