//! The `vault-env` binary: the whole flow, top to bottom, and `Result` → exit code.

use std::process::ExitCode;
use vault_env::cli::{self, Parsed};
use vault_env::client::Client;
use vault_env::config::{Config, Env};
use vault_env::resolve::{self, Plan, Resolved};
use vault_env::{Error, SecretString, auth, child_env, logging};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprint!("{}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}

fn run() -> Result<ExitCode, Error> {
    let args = match cli::parse(std::env::args_os().collect())? {
        Parsed::Run(args) => args,
        Parsed::Done(code) => return Ok(code),
    };
    let env = Env::from_process();
    let config = Config::from_env(&env).map_err(Error::Config)?;
    logging::init(&config);
    let program = vault_env_supervisor::lookup(&args.program, env.get("PATH"))?;
    let plan = resolve::plan(&env, &config).map_err(Error::Vars)?;

    let (resolved, login_token) = if plan.needs_vault() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
        runtime.block_on(fetch_secrets(&config, &plan))?
    } else {
        tracing::debug!("no vault: reference in the environment; Vault is not contacted");
        (Resolved::default(), None)
    };
    if config.daemon == Some(true) {
        tracing::warn!("VAULT_ENV_DAEMON=true: daemon mode is not available in this version; running in exec mode");
    }
    warn_unrenewed_leases(&resolved);
    if !config.delay.is_zero() {
        tracing::info!("waiting {} before starting the app (VAULT_ENV_DELAY)", humantime::format_duration(config.delay));
        std::thread::sleep(config.delay);
    }

    let child_env = child_env::build(&env, &config, &resolved, login_token.as_ref());
    tracing::info!(program = %program.display(), "spawning process");
    Err(vault_env_supervisor::exec(&program, &args.program, &args.args, &child_env).into())
}

/// Token, then every secret concurrently. Returns the token too when the app asked for it.
async fn fetch_secrets(config: &Config, plan: &Plan) -> Result<(Resolved, Option<SecretString>), Error> {
    let client = Client::new(config)?;
    let token = auth::token(&client, &config.auth).await?;
    tracing::debug!(source = %token.source, "using token");
    let client = client.with_token(token.secret.clone());
    let fetched = resolve::fetch(&client, plan, &config.transit).await;
    let resolved = resolve::render(plan, &fetched, config.ignore_missing).map_err(Error::Vars)?;
    tracing::info!(
        variables = resolved.values.len() + resolved.from_path.len(),
        requests = plan.fetches.len(),
        "secrets resolved"
    );
    if config.revoke_token {
        match client.revoke_self().await {
            Ok(()) => tracing::info!("token revoked (VAULT_REVOKE_TOKEN)"),
            Err(e) => tracing::warn!("could not revoke the token: {e}"),
        }
    }
    Ok((resolved, plan.login.then_some(token.secret)))
}

fn warn_unrenewed_leases(resolved: &Resolved) {
    if resolved.leases.is_empty() {
        return;
    }
    let list: Vec<String> = resolved.leases.iter().map(|l| format!("{} (ttl {}s)", l.path, l.duration)).collect();
    tracing::warn!(
        "exec mode cannot renew {} lease(s): {}; they end with their TTL or the token",
        resolved.leases.len(),
        list.join(", ")
    );
}
