//! [`PipelineError`]: which stage failed, on which item, and how.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The boxed error a fallible stage, source or sink hands back.
pub(crate) type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// How a stage failed; see [`PipelineError::kind`].
///
/// Marked `#[non_exhaustive]`: match it with a wildcard arm, so that new kinds do not break
/// callers.
///
/// # Examples
///
/// ```
/// use parkit::pipeline::{ErrorKind, Pipeline};
///
/// let err = Pipeline::from(0..10u32)
///     .try_stage("check", 2, |x| if x == 3 { Err("three") } else { Ok(x) })
///     .collect()
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Failed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The function returned `Err`: a [`try_stage`](super::Pipeline::try_stage), the sink of
    /// [`try_for_each`](super::Pipeline::try_for_each), or an item of a
    /// [`try_from_iter`](super::Pipeline::try_from_iter) source. The error is the
    /// [`source`](Error::source) of the [`PipelineError`].
    Failed,
    /// The function panicked (or the source iterator's `next`, or a value's `Drop`); the panic
    /// message is in [`PipelineError::panic_message`].
    Panicked,
}

/// The message of a panic, from the payload that [`std::panic::catch_unwind`] or
/// [`std::thread::JoinHandle::join`] hands back: the text of `panic!("...")` (a `&str` or a
/// `String` payload), or `None` for any other payload (`std::panic::panic_any`).
///
/// The same reading of a payload that [`PipelineError::panic_message`] reports, for code that
/// catches panics at its own boundary (like [`std::panic::PanicHookInfo::payload_as_str`], for
/// a payload instead of a hook's info).
///
/// # Examples
///
/// ```
/// use parkit::pipeline::panic_message;
///
/// let caught = std::panic::catch_unwind(|| panic!("item {} is bad", 7)).unwrap_err();
/// assert_eq!(panic_message(&*caught), Some("item 7 is bad"));
///
/// let caught = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
/// assert_eq!(panic_message(&*caught), Some("plain"));
///
/// let caught = std::panic::catch_unwind(|| std::panic::panic_any(42)).unwrap_err();
/// assert_eq!(panic_message(&*caught), None);
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[derive(Debug)]
enum Repr {
    Failed(BoxError),
    Panicked(String),
}

/// The first failure of a pipeline run: the stage it happened in, the 0-based input index of
/// the item being processed, and the error or panic message.
///
/// The source iterator is reported as stage `"source"` (with the index of the item it was
/// producing), and the consumer of [`for_each`](super::Pipeline::for_each) and
/// [`try_for_each`](super::Pipeline::try_for_each) as stage `"sink"`.
///
/// `Display` reads `stage 'parse' failed on item 17: <error>` or
/// `stage 'parse' panicked on item 17: <message>`. A failure's error is also its
/// [`source`](Error::source), so reporters that walk the chain show it twice.
///
/// # Examples
///
/// ```
/// use parkit::pipeline::{ErrorKind, Pipeline};
///
/// let err = Pipeline::from(0..100u32)
///     .stage("double", 2, |x| x * 2)
///     .try_stage("parse", 2, |x| if x == 34 { Err("bad item") } else { Ok(x) })
///     .collect()
///     .unwrap_err();
/// assert_eq!((err.stage(), err.index(), err.kind()), ("parse", 17, ErrorKind::Failed));
/// assert_eq!(err.to_string(), "stage 'parse' failed on item 17: bad item");
/// assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "bad item");
/// ```
#[derive(Debug)]
pub struct PipelineError {
    stage: Arc<str>,
    index: usize,
    repr: Repr,
}

impl PipelineError {
    pub(crate) fn failed(stage: Arc<str>, index: usize, error: BoxError) -> Self {
        PipelineError {
            stage,
            index,
            repr: Repr::Failed(error),
        }
    }

    pub(crate) fn panicked(stage: Arc<str>, index: usize, payload: &(dyn Any + Send)) -> Self {
        let message = panic_message(payload)
            .unwrap_or("panic with a non-string payload")
            .to_owned();
        PipelineError {
            stage,
            index,
            repr: Repr::Panicked(message),
        }
    }

    /// The name of the stage that failed: a stage's name, `"source"` or `"sink"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let err = Pipeline::from(0..4u8).try_for_each(|_| Err("full")).unwrap_err();
    /// assert_eq!(err.stage(), "sink");
    /// ```
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The 0-based position, in the source's order, of the item that failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let err = Pipeline::from(["a", "1", "b"])
    ///     .try_stage("parse", 1, |s| s.parse::<u32>())
    ///     .collect()
    ///     .unwrap_err();
    /// assert_eq!(err.index(), 0);
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the function returned an error or panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::{ErrorKind, Pipeline};
    ///
    /// let err = Pipeline::from(0..4u32)
    ///     .stage("boom", 1, |x| if x == 2 { panic!("two") } else { x })
    ///     .collect()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Panicked);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self.repr {
            Repr::Failed(_) => ErrorKind::Failed,
            Repr::Panicked(_) => ErrorKind::Panicked,
        }
    }

    /// The panic message for [`ErrorKind::Panicked`] (taken from a `&str` or `String` payload),
    /// `None` for a failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let err = Pipeline::from(0..4u32)
    ///     .stage("boom", 1, |x| if x == 2 { panic!("item {x}") } else { x })
    ///     .collect()
    ///     .unwrap_err();
    /// assert_eq!(err.panic_message(), Some("item 2"));
    /// assert_eq!(err.to_string(), "stage 'boom' panicked on item 2: item 2");
    /// ```
    pub fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Failed(_) => None,
            Repr::Panicked(message) => Some(message),
        }
    }

    /// The error a failing function returned, by value (for downcasting); `None` for a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let err = Pipeline::from(["7", "x"])
    ///     .try_stage("parse", 1, |s| s.parse::<u8>())
    ///     .collect()
    ///     .unwrap_err();
    /// let cause = err.into_source().unwrap();
    /// assert!(cause.downcast_ref::<std::num::ParseIntError>().is_some());
    /// ```
    pub fn into_source(self) -> Option<Box<dyn Error + Send + Sync + 'static>> {
        match self.repr {
            Repr::Failed(error) => Some(error),
            Repr::Panicked(_) => None,
        }
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (stage, index) = (&self.stage, self.index);
        match &self.repr {
            Repr::Failed(error) => write!(f, "stage '{stage}' failed on item {index}: {error}"),
            Repr::Panicked(msg) => write!(f, "stage '{stage}' panicked on item {index}: {msg}"),
        }
    }
}

impl Error for PipelineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.repr {
            Repr::Failed(error) => Some(&**error),
            Repr::Panicked(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_messages() {
        let name: Arc<str> = Arc::from("s");
        let owned: Box<dyn Any + Send> = Box::new(String::from("owned"));
        let other: Box<dyn Any + Send> = Box::new(42u8);
        let e = PipelineError::panicked(Arc::clone(&name), 3, &*owned);
        assert_eq!(e.panic_message(), Some("owned"));
        let e = PipelineError::panicked(name, 4, &*other);
        assert_eq!(
            e.to_string(),
            "stage 's' panicked on item 4: panic with a non-string payload"
        );
        assert!(e.source().is_none() && e.into_source().is_none());
    }

    #[test]
    fn is_send_sync() {
        fn check<E: Error + Send + Sync + 'static>() {}
        check::<PipelineError>();
    }
}
