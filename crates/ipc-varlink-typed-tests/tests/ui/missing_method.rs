// The description has Watch; the implementation leaves it out.
use localipc_typed_tests::counter::{AddParameters, AddReply, Error, GetParameters, GetReply, Methods};
use localipc_varlink::{Context, MethodError};

struct Counter;

impl Methods for Counter {
    async fn add(&self, p: AddParameters, _ctx: &Context) -> Result<AddReply, MethodError<Error>> {
        Ok(AddReply { value: p.by })
    }

    async fn get(&self, _: GetParameters, _ctx: &Context) -> Result<GetReply, MethodError<Error>> {
        Ok(GetReply { value: 0 })
    }
}

fn main() {}
