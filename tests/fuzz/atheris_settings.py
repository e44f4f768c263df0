"""Coverage-guided fuzzing of config.parse of every setting, as a flag or from the environment.

    uv run python tests/fuzz/atheris_settings.py --seconds 60

See tests/fuzz/_atheris.py for the options and where findings go.
"""

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fuzz._atheris import script

    script("settings")
