// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IOptionsVault} from "./interfaces/IOptionsVault.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {CappedCall} from "./libraries/CappedCall.sol";

interface IVaultRegistry {
    function isRegistered(address vault) external view returns (bool);
}

/// @title BookSettlement
/// @notice Settles several vaults' trades in one transaction: opposite trades are matched
/// vault-to-vault at the payouts the keeper planned, only the net goes to a DEX in one swap.
/// Each vault checks its own side in its own code (IOptionsVault.settle); this contract only
/// sequences the legs, holds their inputs for the length of the transaction and pays them out.
/// @dev The calls nest: settle -> vault[0].settle -> onSettle -> vault[1].settle -> ... ->
/// innermost onSettle (net swap) and, unwinding, each level pays its vault. The plan lives in
/// transient storage (EIP-1153); a callback is accepted once, and only from the vault whose
/// turn it is. docs/interfaces.md, "Netted settlement".
contract BookSettlement is ISettlement, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 public constant MAX_LEGS = 64;
    /// @notice Gas given to the router call of the net swap.
    uint256 public constant SWAP_GAS_LIMIT = 1_000_000;

    // Transient slots: a header, then LEG_WORDS words per leg, then the net swap's calldata.
    uint256 private constant T_BASE = uint256(keccak256("optkeeper.BookSettlement.transient"));
    uint256 private constant T_KEEPER = T_BASE;
    uint256 private constant T_COUNT = T_BASE + 1;
    uint256 private constant T_QUOTE = T_BASE + 2;
    uint256 private constant T_UNDERLYING = T_BASE + 3;
    uint256 private constant T_EXPECTED = T_BASE + 4; // vault whose callback is due | level << 160
    uint256 private constant T_FIRST_QUOTE = T_BASE + 6; // 1 + index of the first leg paid in quote
    uint256 private constant T_FIRST_UNDERLYING = T_BASE + 7;
    uint256 private constant T_NET_ROUTER = T_BASE + 8;
    uint256 private constant T_NET_SELL = T_BASE + 9;
    uint256 private constant T_NET_IN = T_BASE + 10;
    uint256 private constant T_NET_MIN_OUT = T_BASE + 11;
    uint256 private constant T_NET_SPENT = T_BASE + 12;
    uint256 private constant T_NET_OUT = T_BASE + 13;
    uint256 private constant T_LEGS = T_BASE + 0x100;
    // Per leg: vault | sell << 160 | nonce << 168, amountIn, minOut, deadline, payout.
    uint256 private constant LEG_WORDS = 5;
    uint256 private constant T_SWAP_DATA = T_LEGS + MAX_LEGS * LEG_WORDS; // length, then words

    mapping(address => bool) public isRouter;
    /// @notice Only the vaults of this registry take part: a leg is paid from what the other
    /// legs gave, so a contract that merely answers like a vault must never be one.
    address public immutable registry;

    constructor(address owner_, address registry_) Ownable(owner_) {
        if (registry_.code.length == 0) revert NotRegistered(registry_);
        registry = registry_;
    }

    /// @inheritdoc ISettlement
    function setRouter(address router, bool allowed) external onlyOwner {
        isRouter[router] = allowed;
        emit RouterSet(router, allowed);
    }

    /// @inheritdoc ISettlement
    function settle(Leg[] calldata legs, NetSwap calldata net) external nonReentrant {
        uint256 n = legs.length;
        if (n == 0) revert NoLegs();
        if (n > MAX_LEGS) revert TooManyLegs(n, MAX_LEGS);
        if (net.amountIn != 0 && !isRouter[net.router]) revert RouterNotAllowed(net.router);
        _storePlan(legs, net);
        _settleLeg(0);
        emit Settled(msg.sender, n, net.sellUnderlying, _tload(T_NET_SPENT), _tload(T_NET_OUT));
    }

    /// @inheritdoc ISettlement
    function onSettle(bytes calldata) external {
        uint256 expected = _tload(T_EXPECTED);
        address vault = address(uint160(expected));
        if (vault == address(0) || msg.sender != vault) revert UnexpectedCallback(msg.sender);
        _tstore(T_EXPECTED, 0);
        uint256 i = expected >> 160;
        if (i + 1 < _tload(T_COUNT)) _settleLeg(i + 1);
        else _netSwap();
        _pay(i);
    }

    // --- internals ---------------------------------------------------------------------------

    /// @dev Checks every vault (registered, same token pair) and writes the plan; each vault
    /// checks in its own `settle` that the caller is its keeper.
    function _storePlan(Leg[] calldata legs, NetSwap calldata net) private {
        IOptionsVault first = IOptionsVault(legs[0].vault);
        address quote = first.quote();
        address underlying = first.underlying();
        uint256 firstQuote;
        uint256 firstUnderlying;
        for (uint256 i = 0; i < legs.length; ++i) {
            Leg calldata leg = legs[i];
            IOptionsVault vault = IOptionsVault(leg.vault);
            // The keeper check is each vault's own (`settle` refuses a caller that is not its
            // keeper); a registered vault is a real one, so it is not repeated here.
            if (!IVaultRegistry(registry).isRegistered(leg.vault)) revert NotRegistered(leg.vault);
            if (i != 0 && (vault.quote() != quote || vault.underlying() != underlying)) revert MixedTokens(leg.vault);
            bool sell = leg.trade.sellUnderlying;
            if (sell && firstQuote == 0) firstQuote = i + 1;
            if (!sell && firstUnderlying == 0) firstUnderlying = i + 1;
            uint256 slot = T_LEGS + i * LEG_WORDS;
            uint256 sellBit = sell ? 1 << 160 : 0;
            _tstore(slot, uint256(uint160(leg.vault)) | sellBit | (uint256(leg.trade.expectedStateNonce) << 168));
            _tstore(slot + 1, leg.trade.amountIn);
            _tstore(slot + 2, leg.trade.minOut);
            _tstore(slot + 3, leg.trade.deadline);
            _tstore(slot + 4, leg.payout);
        }
        _tstore(T_KEEPER, uint160(msg.sender));
        _tstore(T_COUNT, legs.length);
        _tstore(T_QUOTE, uint160(quote));
        _tstore(T_UNDERLYING, uint160(underlying));
        _tstore(T_FIRST_QUOTE, firstQuote);
        _tstore(T_FIRST_UNDERLYING, firstUnderlying);
        _tstore(T_NET_IN, net.amountIn);
        _tstore(T_NET_SPENT, 0);
        _tstore(T_NET_OUT, 0);
        if (net.amountIn != 0) _storeNet(net);
    }

    function _storeNet(NetSwap calldata net) private {
        _tstore(T_NET_ROUTER, uint160(net.router));
        _tstore(T_NET_SELL, net.sellUnderlying ? 1 : 0);
        _tstore(T_NET_MIN_OUT, net.minOut);
        bytes calldata data = net.swapData;
        _tstore(T_SWAP_DATA, data.length);
        uint256 words = (data.length + 31) / 32;
        for (uint256 w = 0; w < words; ++w) {
            _tstore(T_SWAP_DATA + 1 + w, uint256(bytes32(data[w * 32:_min(data.length, w * 32 + 32)])));
        }
    }

    /// @dev Call vault `i`'s settle; it calls back onSettle, which goes one level deeper.
    function _settleLeg(uint256 i) private {
        uint256 slot = T_LEGS + i * LEG_WORDS;
        uint256 head = _tload(slot);
        address vault = address(uint160(head));
        IOptionsVault.Trade memory trade = IOptionsVault.Trade({
            sellUnderlying: (head >> 160) & 1 != 0,
            amountIn: _tload(slot + 1),
            minOut: _tload(slot + 2),
            expectedStateNonce: uint64(head >> 168),
            deadline: _tload(slot + 3)
        });
        _tstore(T_EXPECTED, uint256(uint160(vault)) | (i << 160));
        IOptionsVault(vault).settle(trade, address(uint160(_tload(T_KEEPER))), "");
    }

    /// @dev The net swap, with every leg's input held: exact approve, gas-capped router call,
    /// output measured from balances.
    function _netSwap() private {
        uint256 amountIn = _tload(T_NET_IN);
        if (amountIn == 0) return;
        bool sell = _tload(T_NET_SELL) != 0;
        (IERC20 tokenIn, IERC20 tokenOut) = sell
            ? (IERC20(_taddr(T_UNDERLYING)), IERC20(_taddr(T_QUOTE)))
            : (IERC20(_taddr(T_QUOTE)), IERC20(_taddr(T_UNDERLYING)));
        address router = _taddr(T_NET_ROUTER);
        uint256 inBefore = tokenIn.balanceOf(address(this));
        uint256 outBefore = tokenOut.balanceOf(address(this));
        tokenIn.forceApprove(router, amountIn);
        (bool ok, bytes memory reason) = CappedCall.callMemory(router, _loadSwapData(), SWAP_GAS_LIMIT);
        if (!ok) revert NetSwapFailed(reason);
        if (tokenIn.allowance(address(this), router) != 0) tokenIn.forceApprove(router, 0);
        uint256 inAfter = tokenIn.balanceOf(address(this));
        uint256 outAfter = tokenOut.balanceOf(address(this));
        uint256 spent = inBefore > inAfter ? inBefore - inAfter : 0;
        uint256 received = outAfter > outBefore ? outAfter - outBefore : 0;
        if (spent > amountIn) revert NetOverspent(spent, amountIn);
        uint256 minOut = _tload(T_NET_MIN_OUT);
        if (received < minOut) revert NetOutputTooLow(received, minOut);
        _tstore(T_NET_SPENT, spent);
        _tstore(T_NET_OUT, received);
    }

    /// @dev Pay vault `i` its payout in the token it buys. The first leg buying a token takes
    /// everything left of it (positive slippage); leg 0 also takes back what is left of a token
    /// that no leg buys. So nothing stays here after the transaction.
    function _pay(uint256 i) private {
        uint256 slot = T_LEGS + i * LEG_WORDS;
        uint256 head = _tload(slot);
        address vault = address(uint160(head));
        bool sell = (head >> 160) & 1 != 0;
        (IERC20 token, IERC20 other) = sell
            ? (IERC20(_taddr(T_QUOTE)), IERC20(_taddr(T_UNDERLYING)))
            : (IERC20(_taddr(T_UNDERLYING)), IERC20(_taddr(T_QUOTE)));
        uint256 payout = _tload(slot + 4);
        uint256 held = token.balanceOf(address(this));
        if (held < payout) revert Unbalanced(address(token), payout, held);
        uint256 amount = _tload(sell ? T_FIRST_QUOTE : T_FIRST_UNDERLYING) == i + 1 ? held : payout;
        if (amount != 0) token.safeTransfer(vault, amount);
        if (i == 0 && _tload(sell ? T_FIRST_UNDERLYING : T_FIRST_QUOTE) == 0) {
            uint256 rest = other.balanceOf(address(this));
            if (rest != 0) other.safeTransfer(vault, rest);
        }
        emit LegSettled(i, vault, _tload(slot + 1), amount);
    }

    function _loadSwapData() private view returns (bytes memory data) {
        uint256 length = _tload(T_SWAP_DATA);
        data = new bytes(length);
        uint256 words = (length + 31) / 32;
        for (uint256 w = 0; w < words; ++w) {
            uint256 word = _tload(T_SWAP_DATA + 1 + w);
            assembly ("memory-safe") {
                mstore(add(add(data, 0x20), mul(w, 0x20)), word)
            }
        }
    }

    function _tstore(uint256 slot, uint256 value) private {
        assembly ("memory-safe") {
            tstore(slot, value)
        }
    }

    function _tload(uint256 slot) private view returns (uint256 value) {
        assembly ("memory-safe") {
            value := tload(slot)
        }
    }

    function _taddr(uint256 slot) private view returns (address) {
        return address(uint160(_tload(slot)));
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }
}
