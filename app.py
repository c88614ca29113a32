"""`python app.py`: starts the lab in the browser, as the `reliability-lab` command does (see reliability/ui/app.py)."""
from reliability.ui.app import main

if __name__ == "__main__":
    main()
