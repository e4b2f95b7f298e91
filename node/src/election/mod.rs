//! The election state machine (design 3): the [`ElectionApp`] plugged into the replicated store.
//!
//! - [`state`]: stored records, tree names and keys, reads shared by apply and the API.
//! - [`apply`]: the judge, applying each election command deterministically.
//! - [`precheck`]: the checks the proposing node runs before proposing.
//! - [`batch`]: batch verification of concurrent casts (before proposing only).
//! - [`view`]: read-side views (the API's JSON answers).
//!
//! The app also keeps the replication layer's notes commands (delegated to [`NotesApp`]), so the
//! cluster tests run against the production application.

pub mod apply;
pub mod batch;
pub mod precheck;
pub mod state;
pub mod view;

use crate::store::{AppTrees, Application, ApplyContext, ApplyError, NotesApp, Outcome, Request};

/// The election application: every election command, plus the notes test commands.
#[derive(Clone, Copy, Debug, Default)]
pub struct ElectionApp;

impl Application for ElectionApp {
    fn tree_names(&self) -> &'static [&'static str] {
        state::TREES
    }

    fn apply(
        &self,
        ctx: &ApplyContext<'_>,
        trees: &AppTrees<'_>,
        request: &Request,
    ) -> Result<Outcome, ApplyError> {
        if let crate::command::Command::RegisterNodeKey { node, key, proof } = &request.command {
            return crate::head::apply_register(ctx, trees, *node, key, proof);
        }
        match apply::apply(ctx, trees, &request.command)? {
            Some(outcome) => Ok(outcome),
            None => NotesApp.apply(ctx, trees, request),
        }
    }
}

#[cfg(test)]
mod tests;
