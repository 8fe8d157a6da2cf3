from directo.cli import main

main()
