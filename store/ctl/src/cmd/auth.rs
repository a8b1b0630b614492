//! `auth enable|disable`, and the printing shared by `user` and `role`:
//! etcd's Auth service called on keel-client's channel (with the token of
//! `--user`), each response printed in the output format as etcdctl prints it.

use clap::{Args, Subcommand};
use keel_client::auth::AuthChannel;
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthUserGrantRoleRequest,
    ResponseHeader,
};
use prost::Message;

use crate::error::{CtlError, ExitCode, Result};
use crate::global::Ctx;
use crate::outln;
use crate::output::{fields, json, pb, Format, Printer};

/// Enable or disable authentication
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub cmd: AuthCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuthCmd {
    /// Enables authentication
    Enable,
    /// Disables authentication
    Disable,
}

/// An Auth client on the command's first endpoint (authenticated first
/// with `--user`, under the command timeout).
pub async fn client(ctx: &Ctx) -> Result<AuthClient<AuthChannel>> {
    let c = ctx.client()?;
    Ok(AuthClient::new(ctx.timed(c.channel()).await?))
}

/// Runs one Auth call under the command timeout.
pub async fn call<T>(
    ctx: &Ctx,
    fut: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(ctx.g.command_timeout, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(s.into()),
        Err(_) => Err(CtlError::deadline()),
    }
}

/// Prints a response that etcdctl shows as a line in the simple format
/// and as its header elsewhere.
pub fn print_header_resp<M: Message>(
    p: &Printer,
    header: Option<&ResponseHeader>,
    msg: &M,
    simple: &str,
) -> Result<()> {
    match p.format {
        Format::Simple => {
            outln!("{simple}");
            Ok(())
        }
        Format::Json => {
            json::print(&json::header_resp(header));
            Ok(())
        }
        Format::Fields => fields::header_only(header),
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

pub async fn run(ctx: &Ctx, a: AuthArgs) -> Result<()> {
    let mut c = client(ctx).await?;
    match a.cmd {
        AuthCmd::Enable => {
            // As etcdctl: when the root user lacks the root role, create
            // the role, grant it, and try again.
            let mut granted = false;
            loop {
                match call(ctx, c.auth_enable(AuthEnableRequest {})).await {
                    Ok(_) => break,
                    Err(e)
                        if e.msg == "etcdserver: root user does not have root role" && !granted =>
                    {
                        let added = call(
                            ctx,
                            c.role_add(AuthRoleAddRequest {
                                name: "root".into(),
                            }),
                        )
                        .await;
                        match added {
                            Ok(_) => {}
                            Err(e) if e.msg == "etcdserver: role name already exists" => {}
                            Err(e) => return Err(e),
                        }
                        call(
                            ctx,
                            c.user_grant_role(AuthUserGrantRoleRequest {
                                user: "root".into(),
                                role: "root".into(),
                            }),
                        )
                        .await?;
                        granted = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            outln!("Authentication Enabled");
        }
        AuthCmd::Disable => {
            call(ctx, c.auth_disable(AuthDisableRequest {})).await?;
            outln!("Authentication Disabled");
        }
    }
    Ok(())
}
