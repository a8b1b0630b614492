//! `role add|delete|get|list|grant-permission|revoke-permission`:
//! etcdctl's role commands (etcd's Auth service, see [`super::auth`]).

use clap::{ArgAction, Args, Subcommand};
use keel_proto::authpb::Permission;
use keel_proto::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleListRequest, AuthRoleRevokePermissionRequest,
    ResponseHeader,
};
use prost::Message;

use super::auth::{call, client, print_header_resp};
use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, Ctx};
use crate::outln;
use crate::output::go::{json_string, quote, Obj};
use crate::output::{fields, json, pb, Format, Printer};

/// Role related commands
#[derive(Debug, Clone, Args)]
pub struct RoleArgs {
    #[command(subcommand)]
    pub cmd: RoleCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RoleCmd {
    /// Adds a new role
    Add {
        /// <role name>
        args: Vec<String>,
    },
    /// Deletes a role
    Delete {
        /// <role name>
        args: Vec<String>,
    },
    /// Gets detailed information of a role
    Get {
        /// <role name>
        args: Vec<String>,
    },
    /// Lists all roles
    List,
    /// Grants a key to a role
    #[command(name = "grant-permission")]
    GrantPermission {
        /// grant a prefix permission
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        prefix: bool,
        /// grant a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        from_key: bool,
        /// <role name> <permission type> <key> [endkey]
        args: Vec<String>,
    },
    /// Revokes a key from a role
    #[command(name = "revoke-permission")]
    RevokePermission {
        /// revoke a prefix permission
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        prefix: bool,
        /// revoke a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        from_key: bool,
        /// <role name> <key> [endkey]
        args: Vec<String>,
    },
}

/// The range end for `key` [`end`] with `--prefix`/`--from-key`.
fn range_end(key: &str, end: Option<&String>, prefix: bool, from_key: bool) -> Result<Vec<u8>> {
    if prefix && from_key {
        return Err(CtlError::bad_args(
            "--from-key and --prefix flags are mutually exclusive",
        ));
    }
    if let Some(end) = end {
        if prefix || from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        return Ok(end.clone().into_bytes());
    }
    if prefix {
        if key.is_empty() {
            return Ok(vec![0]);
        }
        return Ok(keel_client::prefix_end(key.as_bytes()));
    }
    if from_key {
        return Ok(vec![0]);
    }
    Ok(Vec::new())
}

fn perm_type(s: &str) -> Result<i32> {
    match s.to_uppercase().as_str() {
        "READ" => Ok(0),
        "WRITE" => Ok(1),
        "READWRITE" => Ok(2),
        _ => Err(CtlError::bad_args(format!("invalid permission type: {s}"))),
    }
}

fn perm_name(t: i32) -> &'static str {
    match t {
        1 => "WRITE",
        2 => "READWRITE",
        _ => "READ",
    }
}

/// A list of names (users, roles) in the output format.
pub fn print_names<M: Message>(
    p: &Printer,
    header: Option<&ResponseHeader>,
    msg: &M,
    names: &[String],
    json_name: &str,
    fields_name: &str,
) -> Result<()> {
    match p.format {
        Format::Simple => {
            for n in names {
                outln!("{n}");
            }
            Ok(())
        }
        Format::Json => {
            json::print(
                &Obj::new()
                    .obj("header", header.map(json::header), true)
                    .list(
                        json_name,
                        names.iter().map(|n| json_string(n)).collect(),
                        true,
                        true,
                    )
                    .done(),
            );
            Ok(())
        }
        Format::Fields => {
            fields::header_only(header)?;
            let list: String = names
                .iter()
                .map(|n| format!(" {}", quote(n.as_bytes())))
                .collect();
            outln!("\"{fields_name}\" :{list}");
            Ok(())
        }
        Format::Protobuf => {
            pb::print(msg);
            Ok(())
        }
        Format::Table => Err(CtlError::new(
            ExitCode::BadFeature,
            "table not supported as output format",
        )),
    }
}

/// `role get`'s output.
pub fn print_role_get(p: &Printer, role: &str, r: &AuthRoleGetResponse) -> Result<()> {
    match p.format {
        Format::Simple => {
            outln!("Role {role}");
            let range = |perm: &Permission| {
                let key = String::from_utf8_lossy(&perm.key).into_owned();
                let end = String::from_utf8_lossy(&perm.range_end).into_owned();
                let mut s = if perm.range_end != [0] {
                    format!("\t[{key}, {end})")
                } else {
                    format!("\t[{key}, <open ended>")
                };
                if keel_client::prefix_end(&perm.key) == perm.range_end {
                    s.push_str(&format!(" (prefix {key})"));
                }
                s
            };
            let show = |want: i32| {
                for perm in &r.perm {
                    if perm.perm_type == want || perm.perm_type == 2 {
                        if perm.range_end.is_empty() {
                            outln!("\t{}", String::from_utf8_lossy(&perm.key));
                        } else {
                            outln!("{}", range(perm));
                        }
                    }
                }
            };
            outln!("KV Read:");
            show(0);
            outln!("KV Write:");
            show(1);
            Ok(())
        }
        Format::Json => {
            let perms = r
                .perm
                .iter()
                .map(|x| {
                    Obj::new()
                        .num("permType", x.perm_type, true)
                        .bytes("key", &x.key, true)
                        .bytes("range_end", &x.range_end, true)
                        .done()
                })
                .collect();
            json::print(
                &Obj::new()
                    .obj("header", r.header.as_ref().map(json::header), true)
                    .list("perm", perms, true, true)
                    .done(),
            );
            Ok(())
        }
        Format::Fields => {
            fields::header_only(r.header.as_ref())?;
            for x in &r.perm {
                outln!("\"PermType\" :  {}", perm_name(x.perm_type));
                outln!("\"Key\" : {}", quote(&x.key));
                outln!("\"RangeEnd\" : {}", quote(&x.range_end));
            }
            Ok(())
        }
        Format::Protobuf => {
            pb::print(r);
            Ok(())
        }
        Format::Table => Err(CtlError::new(
            ExitCode::BadFeature,
            "table not supported as output format",
        )),
    }
}

fn one_name(args: &[String], msg: &str) -> Result<String> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(msg));
    }
    Ok(args[0].clone())
}

pub async fn run(ctx: &Ctx, a: RoleArgs) -> Result<()> {
    match a.cmd {
        RoleCmd::Add { args } => {
            let role = one_name(&args, "role add command requires role name as its argument")?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(ctx, c.role_add(AuthRoleAddRequest { name: role.clone() })).await?;
            print_header_resp(&p, r.header.as_ref(), &r, &format!("Role {role} created"))
        }
        RoleCmd::Delete { args } => {
            let role = one_name(
                &args,
                "role delete command requires role name as its argument",
            )?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.role_delete(AuthRoleDeleteRequest { role: role.clone() }),
            )
            .await?;
            print_header_resp(&p, r.header.as_ref(), &r, &format!("Role {role} deleted"))
        }
        RoleCmd::Get { args } => {
            let role = one_name(&args, "role get command requires role name as its argument")?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(ctx, c.role_get(AuthRoleGetRequest { role: role.clone() })).await?;
            print_role_get(&p, &role, &r)
        }
        RoleCmd::List => {
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(ctx, c.role_list(AuthRoleListRequest {})).await?;
            print_names(&p, r.header.as_ref(), &r, &r.roles, "roles", "Roles")
        }
        RoleCmd::GrantPermission {
            prefix,
            from_key,
            args,
        } => {
            if args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = perm_type(&args[1])?;
            let end = range_end(&args[2], args.get(3), prefix, from_key)?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.role_grant_permission(AuthRoleGrantPermissionRequest {
                    name: args[0].clone(),
                    perm: Some(Permission {
                        perm_type,
                        key: args[2].clone().into_bytes(),
                        range_end: end,
                    }),
                }),
            )
            .await?;
            print_header_resp(
                &p,
                r.header.as_ref(),
                &r,
                &format!("Role {} updated", args[0]),
            )
        }
        RoleCmd::RevokePermission {
            prefix,
            from_key,
            args,
        } => {
            if args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let end = range_end(&args[1], args.get(2), prefix, from_key)?;
            let mut c = client(ctx).await?;
            let p = ctx.printer()?;
            let r = call(
                ctx,
                c.role_revoke_permission(AuthRoleRevokePermissionRequest {
                    role: args[0].clone(),
                    key: args[1].clone().into_bytes(),
                    range_end: end.clone(),
                }),
            )
            .await?;
            let end = String::from_utf8_lossy(&end).into_owned();
            let what = if end.is_empty() {
                format!(
                    "Permission of key {} is revoked from role {}",
                    args[1], args[0]
                )
            } else if end != "\0" {
                format!(
                    "Permission of range [{}, {end}) is revoked from role {}",
                    args[1], args[0]
                )
            } else {
                format!(
                    "Permission of range [{}, <open ended> is revoked from role {}",
                    args[1], args[0]
                )
            };
            print_header_resp(&p, r.header.as_ref(), &r, &what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_types_as_etcdctl() {
        assert_eq!(range_end("a", None, true, false).unwrap(), b"b".to_vec());
        assert_eq!(range_end("a", None, false, true).unwrap(), vec![0]);
        assert_eq!(
            range_end("a", Some(&"z".into()), false, false).unwrap(),
            b"z".to_vec()
        );
        assert!(range_end("a", None, true, true).is_err());
        assert_eq!(perm_type("readwrite").unwrap(), 2);
        assert!(perm_type("all").is_err());
    }
}
