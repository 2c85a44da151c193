from vhrmodel.cli import main

main(prog_name="vhrmodel")
