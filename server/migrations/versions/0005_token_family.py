"""api tokens: the login (family) each token belongs to, so a logout or a replayed refresh token ends it whole

Revision ID: 0005_token_family
Revises: 0004_inbox_index
Create Date: 2026-11-25 06:10:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0005_token_family'
down_revision = '0004_inbox_index'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('family', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_api_tokens_family', ['family'], unique=False)


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_api_tokens_family')
        batch_op.drop_column('family')
