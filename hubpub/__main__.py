from hubpub.cli import main

main()
