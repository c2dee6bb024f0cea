import uvicorn

from openai_frontend.app import create_app
from openai_frontend.server import server_options
from openai_frontend.settings import Settings


def main() -> None:
    settings = Settings.from_args()
    uvicorn.run(create_app(settings), **server_options(settings))


if __name__ == "__main__":
    main()
