from helio_proxy.cli import main

main()
