//! Every request's handler runs in a task of its own, to its end.
//!
//! Without this, a caller that hangs up cancels the handler at its next `.await` (the HTTP/2
//! server drops the handler's future when the client resets its stream). A handler is a
//! sequence of steps — record the job, reserve its budget, arm the timer that returns it,
//! write the audit entry — and cutting it between two of them would leave budget reserved
//! with nothing to return it, or a change without its audit entry. A coordinator that cancels
//! its job during the proposal does exactly that to the peer's `Federation.Propose`.
//!
//! The caller still sees its call fail at once; only the handler goes on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::codegen::http::Request;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The layer that wraps the server's routes.
#[derive(Clone, Copy, Default)]
pub(crate) struct DetachLayer;

impl<S> tower::Layer<S> for DetachLayer {
    type Service = Detach<S>;

    fn layer(&self, inner: S) -> Detach<S> {
        Detach(inner)
    }
}

/// A service whose calls run as spawned tasks.
#[derive(Clone)]
pub(crate) struct Detach<S>(S);

impl<S, B> Service<Request<B>> for Detach<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Dropping the join handle detaches the task; it is never aborted.
        let task = tokio::spawn(self.0.call(request));
        Box::pin(async move {
            match task.await {
                Ok(response) => response.map_err(Into::into),
                Err(e) => Err(Box::new(e) as BoxError),
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::Layer as _;

    /// A service whose call takes two steps with a wait between them.
    #[derive(Clone)]
    struct TwoSteps(Arc<AtomicBool>, Arc<tokio::sync::Notify>);

    impl Service<Request<()>> for TwoSteps {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let (done, go) = (Arc::clone(&self.0), Arc::clone(&self.1));
            Box::pin(async move {
                go.notified().await;
                done.store(true, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_call_whose_caller_went_away_still_runs_to_its_end() {
        let done = Arc::new(AtomicBool::new(false));
        let go = Arc::new(tokio::sync::Notify::new());
        let mut service = DetachLayer.layer(TwoSteps(Arc::clone(&done), Arc::clone(&go)));
        let call = service.call(Request::new(()));
        tokio::task::yield_now().await;
        // The caller hangs up while the handler waits between its steps.
        drop(call);
        go.notify_one();
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the handler was cut short");
    }
}
