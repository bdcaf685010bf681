"""scripts/services.sh and PostgreSQL: a cluster it installs lets in a role for the tests
alone, one that was there is left alone, and a MONGARS_TEST_POSTGRES_URL that could smuggle
commands into sed or SQL run as root is refused before anything runs.

It runs under stand-ins for PostgreSQL's tools (see tests/test_scripts.py for the rest of
the harness): no real cluster is touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_scripts import STAND_IN_TOOL, bring_up, exported, path_without
from tests.test_scripts import checkout as checkout  # the fixture

# pg_lsclusters and pg_isready find a cluster once apt-get installed postgresql (or when
# STAND_IN_PG_INSTALLED says one was there); psql lets a user in when the stand-in
# pg_hba.conf trusts it from 127.0.0.1, and answers every query with no rows.
STAND_IN_PG_INSTALLED = (
    '{ [ -n "${STAND_IN_PG_INSTALLED:-}" ] ||'
    ' grep -qx "apt-get install -y -q postgresql" "$STAND_IN_LOG"; }'
)
STAND_IN_POSTGRES_TOOLS = {
    "pg_lsclusters": f"""#!/usr/bin/env bash
{STAND_IN_PG_INSTALLED} || exit 0
echo "16 main $STAND_IN_PG_PORT online postgres /var/lib/postgresql/16/main log"
""",
    "pg_isready": f"""#!/usr/bin/env bash
{STAND_IN_PG_INSTALLED} || exit 2
""",
    "runuser": """#!/usr/bin/env bash
echo "runuser $*" >> "$STAND_IN_LOG"
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
""",
    "psql": """#!/usr/bin/env bash
echo "psql $*" >> "$STAND_IN_LOG"
user=
while [ $# -gt 0 ]; do
  case $1 in
    -U) user=$2 ;;
    -Atqc) [ "$2" = "SHOW hba_file" ] && echo "$STAND_IN_HBA" ;;
  esac
  shift
done
[ -z "$user" ] && exit 0
case $'\\n'"$(cat "$STAND_IN_HBA")" in *$'\\n'"host all $user 127.0.0.1/32 trust"*) exit 0 ;; esac
exit 1
""",
    "createdb": STAND_IN_TOOL,
    "pg_ctlcluster": STAND_IN_TOOL,
}

DEBIAN_HBA = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n"


def bring_up_postgres(
    checkout: Path, tmp_path: Path, url: str, port: int, hba: str = DEBIAN_HBA, **env: str
) -> tuple[int, list[str], str, list[str]]:
    """``bring_up`` PostgreSQL at ``url`` as root, with the stand-ins above, an apt-get
    that installs and ``hba`` as pg_hba.conf (the stand-in cluster listens on ``port``)."""
    path = path_without(tmp_path, *STAND_IN_POSTGRES_TOOLS)
    for name, text in STAND_IN_POSTGRES_TOOLS.items():
        (Path(path) / name).write_text(text)
        (Path(path) / name).chmod(0o755)
    (tmp_path / "pg_hba.conf").write_text(hba)
    return bring_up(
        checkout,
        "postgres",
        path=path,
        uid=0,
        MONGARS_TEST_POSTGRES_URL=url,
        STAND_IN_APT_STATUS="0",
        STAND_IN_HBA=str(tmp_path / "pg_hba.conf"),
        STAND_IN_PG_PORT=str(port),
        **env,
    )


def test_a_postgresql_installed_here_lets_in_a_role_for_the_tests_and_no_superuser(
    checkout: Path, tmp_path: Path
) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:5433/test"
    status, lines, unavailable, calls = bring_up_postgres(checkout, tmp_path, url, 5433)
    assert status == 0, lines
    assert unavailable == ""
    assert exported(checkout)["MONGARS_TEST_POSTGRES_URL"] == (
        "postgresql+asyncpg://mongars_test@127.0.0.1:5433/test"
    )
    admin = [call.removeprefix("psql -p 5433 -Atqc ") for call in calls if "-Atqc" in call]
    assert "CREATE ROLE mongars_test LOGIN CREATEDB NOSUPERUSER" in admin
    assert "createdb -p 5433 -O mongars_test test" in calls
    hba = (tmp_path / "pg_hba.conf").read_text()
    assert hba == (
        "host all mongars_test 127.0.0.1/32 trust  # added by monGARS scripts/test\n" + DEBIAN_HBA
    )
    assert "creating role mongars_test (LOGIN CREATEDB, not a superuser)" in "\n".join(lines)


def test_a_postgresql_that_was_there_is_left_alone(checkout: Path, tmp_path: Path) -> None:
    hba = "host all postgres 127.0.0.1/32 trust\n"
    url = "postgresql+asyncpg://postgres@127.0.0.1:5433/test"
    status, lines, unavailable, calls = bring_up_postgres(
        checkout, tmp_path, url, 5433, hba, STAND_IN_PG_INSTALLED="1"
    )
    assert status == 0, lines
    assert unavailable == ""
    assert exported(checkout) == {"MONGARS_TEST_POSTGRES_URL": url}
    assert calls == ["psql -w -Atq -h 127.0.0.1 -p 5433 -U postgres -d test -c SELECT 1"]
    assert (tmp_path / "pg_hba.conf").read_text() == hba


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "postgresql://a\ne touch pwned\n#@127.0.0.1:5433/test",
            "has a user name with characters other than letters, digits and _",
        ),
        (
            "postgresql://postgres@127.0.0.1:5433/test'; DROP DATABASE test; --",
            "has a database name that does not match ^[A-Za-z0-9_]+$",
        ),
        (
            "postgresql://postgres@127.0.0.1:5433$(touch pwned)/test",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "postgresql://postgres@127.0.0.1:99999/test",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "postgresql://postgres@db\nexample/test",
            "names a host with characters other than letters, digits and ._:-",
        ),
    ],
)
def test_a_postgres_url_that_could_run_commands_is_refused_before_anything_runs(
    checkout: Path, tmp_path: Path, url: str, reason: str
) -> None:
    status, lines, unavailable, calls = bring_up_postgres(checkout, tmp_path, url, 5433)
    assert status == 0, lines
    assert unavailable == f"postgres=MONGARS_TEST_POSTGRES_URL {reason}"
    assert calls == []
    assert not (checkout / "pwned").exists()
    assert (tmp_path / "pg_hba.conf").read_text() == DEBIAN_HBA
    (line,) = lines
    assert line.endswith(
        f"] postgres: not available (MONGARS_TEST_POSTGRES_URL {reason}):"
        " tests marked postgres are skipped"
    )
