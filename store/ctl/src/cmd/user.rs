//! `user add|delete|get|list|passwd|grant-role|revoke-role`: etcdctl's user
//! commands (etcd's Auth service, see [`super::auth`]).

// Requests are built with `..Default::default()` so that fields the auth
// work adds to them (hashed passwords) need no change here.
#![allow(clippy::needless_update)]

use std::io::BufRead;

use clap::{ArgAction, Args, Subcommand};
use keel_proto::etcdserverpb::{
    AuthRoleGetRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
};

use super::auth::{call, client, print_header_resp};
use crate::error::{CtlError, Result};
use crate::global::{go_bool, Ctx};
use crate::outln;
use crate::output::go::{json_string, Obj};
use crate::output::{json, pb, Format};

/// User related commands
#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub cmd: UserCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Adds a new user
    Add {
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "true", value_parser = go_bool,
              help = "Read password from stdin instead of interactive terminal")]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// <user name or user:password>
        args: Vec<String>,
    },
    /// Deletes a user
    Delete {
        /// <user name>
        args: Vec<String>,
    },
    /// Gets detailed information of a user
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        detail: bool,
        /// <user name>
        args: Vec<String>,
    },
    /// Lists all users
    List,
    /// Changes password of user
    Passwd {
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "true", value_parser = go_bool,
              help = "If true, read password from stdin instead of interactive terminal")]
        interactive: bool,
        /// <user name>
        args: Vec<String>,
    },
    /// Grants a role to a user
    #[command(name = "grant-role")]
    GrantRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
    /// Revokes a role from a user
    #[command(name = "revoke-role")]
    RevokeRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
}

/// A password read from stdin (the first word, as Go's `fmt.Scanf("%s")`).
fn read_password() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.split_whitespace().next().unwrap_or("").to_string()
}

fn one_name(args: &[String], msg: &str) -> Result<String> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(msg));
    }
    Ok(args[0].clone())
}

pub async fn run(ctx: &Ctx, a: UserArgs) -> Result<()> {
    match a.cmd {
        UserCmd::Add {
            interactive,
            new_user_password,
            args,
        } => {
            let arg = one_name(&args, "user add command requires user name as its argument")?;
            let (user, password) = if !new_user_password.is_empty() {
                (arg, new_user_password)
            } else if let Some((u, p)) = arg.split_once(':') {
                if u.is_empty() {
                    return Err(CtlError::bad_args("empty user name is not allowed"));
                }
                (u.to_string(), p.to_string())
            } else if !interactive {
                (arg, read_password())
            } else {
                return Err(CtlError::bad_args(
                    "interactive password prompt: not supported by keelctl; give user:password, --new-user-password or --interactive=false",
                ));
            };
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.user_add(AuthUserAddRequest {
                    name: user.clone(),
                    password,
                    ..Default::default()
                }),
            )
            .await?;
            print_header_resp(&p, r.header.as_ref(), &r, &format!("User {user} created"))
        }
        UserCmd::Delete { args } => {
            let user = one_name(
                &args,
                "user delete command requires user name as its argument",
            )?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.user_delete(AuthUserDeleteRequest { name: user.clone() }),
            )
            .await?;
            print_header_resp(&p, r.header.as_ref(), &r, &format!("User {user} deleted"))
        }
        UserCmd::Get { detail, args } => {
            let user = one_name(&args, "user get command requires user name as its argument")?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(ctx, c.user_get(AuthUserGetRequest { name: user.clone() })).await?;
            if detail {
                outln!("User: {user}");
                for role in &r.roles {
                    outln!();
                    let rr =
                        call(ctx, c.role_get(AuthRoleGetRequest { role: role.clone() })).await?;
                    super::role::print_role_get(&p, role, &rr)?;
                }
                return Ok(());
            }
            match p.format {
                Format::Simple => {
                    let roles: String = r.roles.iter().map(|x| format!(" {x}")).collect();
                    outln!("User: {user}");
                    outln!("Roles:{roles}");
                    Ok(())
                }
                Format::Json => {
                    let roles = r.roles.iter().map(|x| json_string(x)).collect();
                    json::print(
                        &Obj::new()
                            .obj("header", r.header.as_ref().map(json::header), true)
                            .list("roles", roles, true, true)
                            .done(),
                    );
                    Ok(())
                }
                Format::Protobuf => {
                    pb::print(&r);
                    Ok(())
                }
                Format::Table | Format::Fields => Err(CtlError::new(
                    crate::error::ExitCode::BadFeature,
                    format!(
                        "{} not supported as output format",
                        if p.format == Format::Table {
                            "table"
                        } else {
                            "fields"
                        }
                    ),
                )),
            }
        }
        UserCmd::List => {
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(ctx, c.user_list(AuthUserListRequest {})).await?;
            if p.format == Format::Fields {
                return Err(CtlError::new(
                    crate::error::ExitCode::BadFeature,
                    "fields not supported as output format",
                ));
            }
            super::role::print_names(&p, r.header.as_ref(), &r, &r.users, "users", "Users")
        }
        UserCmd::Passwd { interactive, args } => {
            let user = one_name(
                &args,
                "user passwd command requires user name as its argument",
            )?;
            if interactive {
                return Err(CtlError::bad_args(
                    "interactive password prompt: not supported by keelctl; use --interactive=false",
                ));
            }
            let password = read_password();
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.user_change_password(AuthUserChangePasswordRequest {
                    name: user,
                    password,
                    ..Default::default()
                }),
            )
            .await?;
            print_header_resp(&p, r.header.as_ref(), &r, "Password updated")
        }
        UserCmd::GrantRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args(
                    "user grant command requires user name and role name as its argument",
                ));
            }
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.user_grant_role(AuthUserGrantRoleRequest {
                    user: args[0].clone(),
                    role: args[1].clone(),
                }),
            )
            .await?;
            print_header_resp(
                &p,
                r.header.as_ref(),
                &r,
                &format!("Role {} is granted to user {}", args[1], args[0]),
            )
        }
        UserCmd::RevokeRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            }
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.user_revoke_role(AuthUserRevokeRoleRequest {
                    name: args[0].clone(),
                    role: args[1].clone(),
                }),
            )
            .await?;
            print_header_resp(
                &p,
                r.header.as_ref(),
                &r,
                &format!("Role {} is revoked from user {}", args[1], args[0]),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: UserArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["user", "add", "u:p", "--interactive=false"]).unwrap();
        assert!(matches!(
            t.a.cmd,
            UserCmd::Add {
                interactive: false,
                ..
            }
        ));
        let t = T::try_parse_from(["user", "grant-role", "u", "r"]).unwrap();
        assert!(matches!(t.a.cmd, UserCmd::GrantRole { ref args } if args.len() == 2));
        let t = T::try_parse_from(["user", "get", "u", "--detail"]).unwrap();
        assert!(matches!(t.a.cmd, UserCmd::Get { detail: true, .. }));
        assert_eq!(one_name(&[], "m").unwrap_err().msg, "m");
    }
}
