// Get answers with Add's reply type.
use std::sync::Arc;

use localipc_typed_tests::counter::{
    AddParameters, AddReply, Error, GetParameters, Methods, WatchParameters, WatchReply,
};
use localipc_varlink::{Context, MethodError, More};

struct Counter;

impl Methods for Counter {
    async fn add(&self, p: AddParameters, _ctx: &Context) -> Result<AddReply, MethodError<Error>> {
        Ok(AddReply { value: p.by })
    }

    async fn get(&self, _: GetParameters, _ctx: &Context) -> Result<AddReply, MethodError<Error>> {
        Ok(AddReply { value: 0 })
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
