// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {IOptionsVault} from "./IOptionsVault.sol";

/// @notice BookSettlement: settles the trades of several vaults in one transaction, netting
/// opposite trades vault-to-vault and sending only the net to a DEX in one swap
/// (docs/interfaces.md, "Netted settlement"). Each vault checks its own side in its own code.
interface ISettlement {
    /// @notice One vault's part: the trade it makes and what the settlement pays it (in the
    /// token it buys). The vault enforces payout >= its own oracle-bounded minimum.
    struct Leg {
        address vault;
        IOptionsVault.Trade trade;
        uint256 payout;
    }

    /// @notice The net that goes to the market: sell `amountIn` of one token through an
    /// allowlisted router for at least `minOut` of the other. amountIn == 0: nothing to swap
    /// (the legs match exactly).
    struct NetSwap {
        address router;
        bool sellUnderlying;
        uint256 amountIn;
        uint256 minOut;
        bytes swapData;
    }

    event Settled(address indexed keeper, uint256 legs, bool sellUnderlying, uint256 netIn, uint256 netOut);
    event LegSettled(uint256 indexed index, address indexed vault, uint256 amountIn, uint256 payout);
    event RouterSet(address indexed router, bool allowed);

    error NotRegistered(address vault);
    error UnexpectedCallback(address caller);
    error TooManyLegs(uint256 legs, uint256 max);
    error NoLegs();
    error MixedTokens(address vault);
    error RouterNotAllowed(address router);
    error NetSwapFailed(bytes reason); // reason truncated to 256 bytes
    error NetOutputTooLow(uint256 received, uint256 required);
    error NetOverspent(uint256 spent, uint256 amountIn);
    error Unbalanced(address token, uint256 owed, uint256 held);

    /// @notice Settle `legs` (all on the same quote/underlying pair), swapping `net` on the
    /// market. Reverts as a whole if any vault refuses its part (see docs/interfaces.md for why).
    /// Every leg's vault must be registered in `registry()` (a contract posing as a vault could
    /// otherwise be paid what a real vault gave up), and the caller must be a keeper of every
    /// vault: each vault refuses, in its own `settle`, a caller not on its keeper list.
    /// Whatever is left over after every payout (positive slippage) goes to the first leg that
    /// receives that token.
    function settle(Leg[] calldata legs, NetSwap calldata net) external;

    /// @notice Callback from the vault being settled; accepted only from that vault while
    /// `settle` is running.
    function onSettle(bytes calldata data) external;

    function setRouter(address router, bool allowed) external;
    function isRouter(address router) external view returns (bool);
    /// @notice The registry whose vaults alone may take part (immutable).
    function registry() external view returns (address);
    function MAX_LEGS() external view returns (uint256);
}
