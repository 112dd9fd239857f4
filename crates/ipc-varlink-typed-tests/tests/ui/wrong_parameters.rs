// Add takes Get's parameters.
use std::sync::Arc;

use localipc_typed_tests::counter::{
    AddReply, Error, GetParameters, GetReply, Methods, WatchParameters, WatchReply,
};
use localipc_varlink::{Context, MethodError, More};

struct Counter;

impl Methods for Counter {
    async fn add(&self, _: GetParameters, _ctx: &Context) -> Result<AddReply, MethodError<Error>> {
        Ok(AddReply { value: 0 })
    }

    async fn get(&self, _: GetParameters, _ctx: &Context) -> Result<GetReply, MethodError<Error>> {
        Ok(GetReply { value: 0 })
    }

    fn watch(
        self: Arc<Self>,
        _: WatchParameters,
        _ctx: Context,
    ) -> impl futures::Stream<Item = Result<More<WatchReply>, MethodError<Error>>> + Send + 'static {
        futures::stream::empty()
    }
}

fn main() {}
