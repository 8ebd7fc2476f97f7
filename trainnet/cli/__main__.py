from trainnet.cli import main

main()
