import uvicorn

from openai_frontend.app import create_app
from openai_frontend.settings import Settings


def main() -> None:
    settings = Settings.from_args()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
