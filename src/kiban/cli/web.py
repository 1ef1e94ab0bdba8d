"""``kiban serve`` (the web console) and ``kiban users`` (who may use it)."""

from __future__ import annotations

import getpass
import ipaddress
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kiban.cli import State, app
from kiban.cli.output import JsonOpt

users_app = typer.Typer(help="Users of the web console and API: add, remove, passwd, role, list, token.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


WEB_MODULES = ("fastapi", "uvicorn", "jinja2", "multipart", "argon2")  # what the `web` extra installs


VALUE_MODULES = ("statsmodels", "scipy", "pandas")  # what the `value` extra installs (kiban initiatives measure)


def need_web_extra(command: str) -> None:
    """One line naming the extra to install, instead of a traceback ending in "No module named 'uvicorn'"."""
    need_extra(command, "web", WEB_MODULES)


def need_extra(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """A ConfigError naming ``kiban[extra]`` when one of its ``modules`` is not installed."""
    import importlib.util

    from kiban.errors import ConfigError

    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise ConfigError(f"`kiban {command}` needs the {extra} extra: pip install 'kiban[{extra}]' "
                          f"(missing: {', '.join(missing)})")


def _accounts() -> Any:
    need_web_extra("users")
    from kiban.project import load_project
    from kiban.store import Store
    from kiban.web.accounts import Accounts

    return Accounts(Store(load_project(State.project_dir).state_url))


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a container: still audited
        return "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS; cookies are Secure.")] = None,
    key: Annotated[Path | None, typer.Option(help="TLS private key (PEM) for --cert.")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        "--trusted-proxy", help="Address of a reverse proxy whose X-Forwarded-For/-Proto headers are believed "
        "(repeatable). Without it no client's forwarding headers are believed: the address is the peer's.")] = None,
    pg: Annotated[int | None, typer.Option("--pg", min=1, max=65535, metavar="PORT",
                                           help="Also serve the PostgreSQL protocol on PORT (see `kiban pg`).")] = None,
) -> None:
    """The web console and HTTP API (/api/v1, described at /openapi.json) for this project."""
    need_web_extra("serve")
    import uvicorn

    from kiban.cli.output import console
    from kiban.errors import UsageError
    from kiban.web import create_app

    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together", "pass both to serve HTTPS, or neither")
    application = create_app(State.project_dir)
    users = application.state.accounts.count_users()
    if users == 0 and not is_loopback(host):
        raise UsageError(f"refusing to serve on {host}: no user is configured, so nobody could sign in, and "
                         "the console must never be open to the network without accounts",
                         "create one first: kiban users add NAME --role admin")
    scheme = "https" if cert else "http"
    console.print(f"kiban console for [bold]{application.state.site.project.name}[/] on {scheme}://{host}:{port}/ "
                  f"(API: /api/v1, described at /openapi.json; Ctrl-C stops)")
    if users == 0:
        console.print("[yellow]no users yet:[/] add one with [bold]kiban users add NAME --role admin[/]")
    if pg is not None:
        import threading

        server = _pg_server(host, pg, users, tls=(str(cert), str(key) if key else None) if cert else None)
        threading.Thread(target=server.serve_forever, name="kiban-pg", daemon=True).start()
        console.print(f"PostgreSQL protocol (read-only, console users) on {host}:{pg}")
    # live pages hold an event stream open: on Ctrl-C, give answers 3 s to finish, then close the streams
    uvicorn.run(application, host=host, port=port, log_level="warning", ssl_certfile=cert, ssl_keyfile=key,
                timeout_graceful_shutdown=3, **proxy_options(trusted_proxy or []))


def _pg_server(host: str, port: int, users: int, timeout: float = 300.0, *,
               tls: tuple[str, str | None] | None = None, require_tls: bool = False) -> Any:
    from kiban.errors import UsageError
    from kiban.pgwire.server import serve_pg, tls_context
    from kiban.project import load_project

    if users == 0:
        raise UsageError("no user is configured, so nobody could sign in over the PostgreSQL protocol",
                         "create one first: kiban users add NAME --role analyst")
    context = tls_context(*tls) if tls else None
    try:
        return serve_pg(load_project(State.project_dir), host, port, timeout=timeout, tls=context,
                        require_tls=require_tls)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@app.command("pg")
def pg_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 5433,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a query may run.")] = 300.0,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM): clients asking for TLS "
                                                       "(sslmode=require) get it.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM) for --tls-cert.")] = None,
    require_tls: Annotated[bool, typer.Option(help="Refuse clients that do not ask for TLS.")] = False,
) -> None:
    """The published marts over the PostgreSQL protocol (BI tools, ODBC, psql): console users, read-only, masked."""
    need_web_extra("pg")
    from kiban.cli.output import console
    from kiban.errors import UsageError

    if tls_key is not None and tls_cert is None:
        raise UsageError("--tls-key goes with --tls-cert")
    server = _pg_server(host, port, _accounts().count_users(), timeout, require_tls=require_tls,
                        tls=(str(tls_cert), str(tls_key) if tls_key else None) if tls_cert else None)
    if not is_loopback(host) and not require_tls:
        console.print("[yellow]passwords travel in clear unless the client asks for TLS:[/] give --tls-cert and "
                      "--require-tls, put a TLS-terminating proxy in front of it, or keep it on loopback")
    console.print(f"kiban PostgreSQL endpoint on {host}:{port} (read-only; Ctrl-C stops): "
                  f"psql -h {host} -p {port} -U NAME")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def proxy_options(trusted: list[str]) -> dict[str, Any]:
    """uvicorn's forwarding settings: off unless proxies are named (uvicorn's own default believes 127.0.0.1,
    so any local client could forge its address in the sign-in throttle and the audit log)."""
    from kiban.errors import UsageError

    for address in trusted:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise UsageError(f"--trusted-proxy {address} is not an IP address or network",
                             "for example --trusted-proxy 10.0.0.5") from None
    if not trusted:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted)}


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    role: Annotated[str, typer.Option(help="viewer, analyst, operator or admin.")] = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Add a user; the password is asked for (or read from stdin) and stored as an argon2 hash."""
    from kiban.cli.output import console
    from kiban.web.accounts import check_role

    accounts = _accounts()
    check_role(role)
    accounts.add_user(name, _password(password_stdin), role)
    accounts.audit(_actor(), "user.add", name, None, "ok", f"role {role}")
    console.print(f"added [bold]{name}[/] ({role})")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Remove a user, their sessions and their API tokens."""
    from kiban.cli.output import console

    accounts = _accounts()
    accounts.remove_user(name)
    accounts.audit(_actor(), "user.remove", name)
    console.print(f"removed [bold]{name}[/]")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Set a user's password (signs them out everywhere)."""
    from kiban.cli.output import console

    accounts = _accounts()
    accounts.require(name)
    accounts.set_password(name, _password(password_stdin))
    accounts.audit(_actor(), "user.passwd", name)
    console.print(f"password of [bold]{name}[/] changed")


@users_app.command("role")
def users_role(name: Annotated[str, typer.Argument(help="User name.")],
               role: Annotated[str, typer.Argument(help="viewer, analyst, operator or admin.")]) -> None:
    """Change a user's role."""
    from kiban.cli.output import console

    accounts = _accounts()
    accounts.set_role(name, role)
    accounts.audit(_actor(), "user.role", name, None, "ok", f"role {role}")
    console.print(f"[bold]{name}[/] is now {role}")


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Users and their roles."""
    from rich.table import Table

    from kiban.cli.output import console, emit_json, utc_iso

    found = _accounts().list_users()
    if as_json:
        emit_json({"users": [{"user": u.name, "role": u.role, "created_at": utc_iso(u.created_at)} for u in found]})
        return
    if not found:
        console.print("no users yet: [bold]kiban users add NAME --role admin[/]")
        return
    table = Table(box=None, header_style="bold")
    for col in ("user", "role", "created (UTC)"):
        table.add_column(col)
    for user in found:
        table.add_row(user.name, user.role, user.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="User name: the token acts with this user's role.")],
    label: Annotated[str | None, typer.Option(help="What the token is for (shown in the audit log).")] = None,
    revoke: Annotated[bool, typer.Option("--revoke", help="Revoke all of this user's tokens instead.")] = False,
) -> None:
    """Create an API token (printed once; only its SHA-256 is kept), or --revoke them all."""
    from kiban.cli.output import console, err_console

    accounts = _accounts()
    if revoke:
        count = accounts.revoke_tokens(accounts.require(name).name)
        accounts.audit(_actor(), "token.revoke", name, None, "ok", f"{count} tokens")
        console.print(f"revoked {count} token(s) of [bold]{name}[/]")
        return
    token = accounts.create_token(name, label)
    accounts.audit(_actor(), "token.create", name, None, "ok", label)
    sys.stdout.write(token + "\n")
    err_console.print(f"[dim]send it as 'Authorization: Bearer {token[:8]}…'; it is not shown again[/]")
