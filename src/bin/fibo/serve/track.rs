//! The layer around every route: times and counts each request by route and status, and
//! answers a panic in a handler with a 500 for that request only. One small future wrapping
//! the route's own (no boxing, no extra task), because this runs on every request: the same
//! work done with `axum::middleware::from_fn` and tower-http's `CatchPanicLayer` cost a cached
//! `GET /fib/1000` about a fifth of its throughput here.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::api::ApiError;
use super::hub::panic_message;
use super::metrics::Metrics;

/// Wraps each route in [`Track`].
#[derive(Clone, Debug)]
pub(crate) struct TrackLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// A route with its requests timed, counted and guarded against panics.
#[derive(Clone, Debug)]
pub(crate) struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = self.metrics.route_index(
            req.extensions()
                .get::<MatchedPath>()
                .map_or("other", MatchedPath::as_str),
        );
        TrackFuture {
            inner: self.inner.call(req),
            started: Instant::now(),
            route,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

pin_project! {
    /// The future of a [`Track`]ed request.
    pub(crate) struct TrackFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        route: usize,
        metrics: Arc<Metrics>,
    }
}

impl<F> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let response = match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(r))) => r,
            Ok(Poll::Ready(Err(never))) => match never {},
            // The inner future is not polled again: this request is over.
            Err(p) => ApiError::internal(&panic_message(&*p)).into_response(),
        };
        this.metrics.observe(
            *this.route,
            response.status().as_u16(),
            this.started.elapsed().as_secs_f64(),
        );
        Poll::Ready(Ok(response))
    }
}
